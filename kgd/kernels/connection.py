"""Talking to one kernel over ZeroMQ, given only its connection info.

A ``KernelConnection`` needs the connection info (transport, ip, ports, key,
signature_scheme) and an ``IZmqSockets``; it knows nothing of the process.
It signs and checks messages, runs the kernel_info handshake, fans iopub
out to listeners, and routes replies.  One kernel has one iopub SUB and one
shell, control and stdin DEALER (under one routing identity), whatever the
number of its clients (``KernelClient``): Jupyter Server opens three sockets
per WebSocket, which runs a daemon out of ZeroMQ sockets and descriptors at a
few hundred connections.  What the sockets lose, the routing table gives
back: each request's ``msg_id`` names the client that sent it, so its reply,
and each ``input_request`` the kernel sends on stdin for it (to the identity
that sent the ``execute_request``: the shared one), go back to that client
and no other.  Because it needs nothing but connection info, another process
could build one from stored info.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Mapping

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from kgd.interfaces import IZmqSocket, IZmqSockets
from kgd.kernels import messages
from kgd.kernels.activity import KernelActivity
from kgd.kernels.zmq_sockets import channel_url

log = Logger()

CLIENT_CHANNELS = ("shell", "control", "stdin")
#: Client requests waiting for their reply, per kernel; past this the oldest
#: is forgotten (a kernel that never answers must not grow the table forever).
PENDING_LIMIT = 10_000

IopubListener = Callable[[messages.RawMessage], None]
ClientReceiver = Callable[[str, messages.RawMessage], None]


class KernelGone(Exception):
    """The kernel was shut down or died for good; nothing can be sent to it."""


class HandshakeTimedOut(Exception):
    """The kernel did not answer kernel_info in time."""


class KernelClient:
    """One client of a kernel: what it sends, and the replies and input requests meant for it.

    The receiver can be swapped (``receive``) so a WebSocket layer can keep a
    client while a session reconnects.  ``pending`` is the ids of its
    requests still waiting for a reply.
    """

    def __init__(self, connection: "KernelConnection", receive: ClientReceiver) -> None:
        self.connection = connection
        self.receive = receive
        self.pending: set[str] = set()
        self.closed = False

    def send(self, channel: str, message: messages.RawMessage) -> None:
        """Sign and send a client message to the kernel on shell, control or stdin."""
        if self.closed:
            raise KernelGone(self.connection.kernel_id)
        self.connection.send_for(self, channel, message)

    def close(self) -> None:
        """Stop receiving; replies still due to this client are dropped."""
        if self.closed:
            return
        self.closed = True
        self.connection.detach(self)


class KernelConnection:
    """The gateway's sockets to one kernel, shared by the gateway's own requests and every client."""

    def __init__(
        self,
        kernel_id: str,
        sockets: IZmqSockets,
        activity: KernelActivity,
        connection_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.kernel_id = kernel_id
        self.activity = activity
        self._sockets = sockets
        self.session_id = uuid.uuid4().hex
        # The kernel sends input_request on stdin to the identity that asked on shell.
        self._identity = uuid.uuid4().hex.encode("ascii")
        self.bad_signatures = 0
        self.connection_info: dict[str, Any] = {}
        self.signer = messages.Signer(b"")
        self.closed = False
        self._iopub: IZmqSocket | None = None
        self._dealers: dict[str, IZmqSocket] = {}
        self._clients: set[KernelClient] = set()
        self._routes: dict[str, KernelClient] = {}
        self._iopub_listeners: list[IopubListener] = []
        self._own_requests: dict[str, defer.Deferred[messages.RawMessage]] = {}
        self._ready: defer.Deferred[None] | None = None
        self._joined: list[defer.Deferred[None]] = []  # handshakes asked for while one was under way
        self._iopub_seen = False
        self._info_seen = False
        if connection_info:
            self.connect(connection_info)

    # -- sockets -------------------------------------------------------------

    def connect(self, connection_info: Mapping[str, Any]) -> None:
        """Point every socket at these ports and key; nothing to do if they did not change.

        Requests sent to the kernel's previous ports will never be answered:
        their routes go.
        """
        if dict(connection_info) == self.connection_info:
            return
        self.connection_info = dict(connection_info)
        key = self.connection_info.get("key", b"")
        self.signer = messages.Signer(key.encode() if isinstance(key, str) else key)
        self._close_sockets()
        self._forget_routes()
        info = self.connection_info
        self._iopub = self._sockets.subscriber(channel_url(info, "iopub"), self._iopub_received)
        self._dealers = {
            channel: self._sockets.dealer(
                channel_url(info, channel),
                lambda frames, channel=channel: self._received(channel, frames),
                identity=self._identity,
            )
            for channel in CLIENT_CHANNELS
        }

    def _close_sockets(self) -> None:
        for socket in [self._iopub, *self._dealers.values()]:
            if socket is not None:
                socket.close()
        self._iopub = None
        self._dealers = {}

    def _forget_routes(self) -> None:
        self._routes.clear()
        for client in self._clients:
            client.pending.clear()

    def client(self, receive: ClientReceiver) -> KernelClient:
        """A new client of this kernel (no socket of its own)."""
        if self.closed:
            raise KernelGone(self.kernel_id)
        client = KernelClient(self, receive)
        self._clients.add(client)
        return client

    def detach(self, client: KernelClient) -> None:
        """Forget a closed client and the routes of its unanswered requests."""
        self._clients.discard(client)
        for msg_id in client.pending:
            if self._routes.get(msg_id) is client:
                del self._routes[msg_id]
        client.pending.clear()

    def clients(self) -> frozenset[KernelClient]:
        """The clients attached now."""
        return frozenset(self._clients)

    def close(self) -> None:
        """Close every socket and client; fail the gateway's pending requests."""
        self.closed = True
        for client in list(self._clients):
            client.close()
        self._close_sockets()
        for waiter in self._own_requests.values():
            if not waiter.called:
                waiter.errback(KernelGone(self.kernel_id))
        self._own_requests.clear()

    def send_for(self, client: KernelClient, channel: str, message: messages.RawMessage) -> None:
        """Send a client's message; a request is remembered so its reply finds the client.

        Only ``*_request`` messages get replies (``comm_msg``, ``input_reply``
        do not), so only they are remembered.  A msg_id another client's
        request still waits under keeps its first owner: replies are never
        handed to a client that merely reused an id it saw on iopub.
        """
        self.activity.outgoing(message)
        if message.msg_type.endswith("_request"):
            self._route(message.msg_id, client)
        self._dealers[channel].send(self.encode(message))

    def _route(self, msg_id: str, client: KernelClient) -> None:
        owner = self._routes.get(msg_id)
        if owner is not None and owner is not client:
            log.warn(
                "kernel {kernel_id}: a client reused msg_id {msg_id} of another client's pending request;"
                " the reply goes to the first",
                kernel_id=self.kernel_id,
                msg_id=msg_id,
                event="duplicate_msg_id",
            )
            return
        self._routes[msg_id] = client
        client.pending.add(msg_id)
        if len(self._routes) > PENDING_LIMIT:
            oldest = next(iter(self._routes))
            self._routes.pop(oldest).pending.discard(oldest)

    # -- listeners -----------------------------------------------------------

    def add_iopub_listener(self, listener: IopubListener) -> None:
        """Receive every iopub message, gateway status messages included."""
        self._iopub_listeners.append(listener)

    def remove_iopub_listener(self, listener: IopubListener) -> None:
        """Stop receiving iopub messages."""
        if listener in self._iopub_listeners:
            self._iopub_listeners.remove(listener)

    def broadcast_status(self, state: str) -> None:
        """Tell every listener the state, as Jupyter Server does on restart and death."""
        message = messages.new_message("status", {"execution_state": state}, session=self.session_id)
        for listener in list(self._iopub_listeners):
            listener(message)

    # -- handshake -----------------------------------------------------------

    @property
    def handshaking(self) -> bool:
        """True while a handshake waits for kernel_info and iopub."""
        return self._ready is not None and not self._ready.called

    def handshake(self, clock: IReactorTime, timeout: float, nudge_interval: float) -> defer.Deferred[None]:
        """Fire once kernel_info is answered and iopub flows; fail with HandshakeTimedOut.

        kernel_info_request is sent again every ``nudge_interval`` seconds:
        until the SUB socket is subscribed, the kernel's status is lost.  A
        handshake already under way is joined, not started twice.
        """
        if self._ready is not None:
            joined: defer.Deferred[None] = defer.Deferred()
            self._joined.append(joined)
            return joined
        self._iopub_seen = False
        self._info_seen = False
        ready: defer.Deferred[None] = defer.Deferred()
        self._ready = ready
        calls: list[IDelayedCall] = []

        def nudge() -> None:
            if not ready.called:
                self.request("shell", "kernel_info_request", {})
                calls.append(clock.callLater(nudge_interval, nudge))

        def timed_out() -> None:
            if not ready.called:
                ready.errback(HandshakeTimedOut(timeout))

        def finished(result: Any) -> Any:
            self._ready = None
            for call in calls:
                if call.active():
                    call.cancel()
            joined, self._joined = self._joined, []
            for waiter in joined:
                waiter.callback(result)  # a Failure errbacks it
            return result

        nudge()
        calls.append(clock.callLater(timeout, timed_out))
        return ready.addBoth(finished)

    def abandon_handshake(self, error: Exception) -> None:
        """Fail a running handshake with ``error`` (the process died, or a shutdown came first)."""
        if self._ready is not None and not self._ready.called:
            self._ready.errback(error)

    def _check_ready(self) -> None:
        if self.handshaking and self._iopub_seen and self._info_seen:
            self.activity.ready()
            assert self._ready is not None
            self._ready.callback(None)

    # -- messages ------------------------------------------------------------

    def encode(self, message: messages.RawMessage) -> list[bytes]:
        """Frames of ``message``, signed with this kernel's key."""
        return messages.to_zmq(message, self.signer)

    def decode(self, channel: str, frames: list[bytes]) -> messages.RawMessage | None:
        """The message in ``frames``, or None (logged) if its signature or shape is bad."""
        try:
            return messages.from_zmq(frames, self.signer)
        except messages.BadSignature:
            self.bad_signatures += 1
            log.warn(
                "kernel {kernel_id}: dropped a {channel} message with a bad signature",
                kernel_id=self.kernel_id,
                channel=channel,
                event="bad_signature",
            )
        except messages.MalformedMessage as error:
            log.warn(
                "kernel {kernel_id}: dropped a malformed {channel} message: {error}",
                kernel_id=self.kernel_id,
                channel=channel,
                error=error,
            )
        return None

    def _iopub_received(self, frames: list[bytes]) -> None:
        message = self.decode("iopub", frames)
        if message is None:
            return
        self._iopub_seen = True
        if message.msg_type == "iopub_welcome":
            # ipykernel 7's XPUB greets each new subscriber (JEP 65): proof that
            # iopub flows, but a handshake between the kernel and kgd's SUB,
            # not activity, and unknown to clients (jupyter-js-services rejects it).
            self._check_ready()
            return
        self.activity.iopub(message, handshaking=self._ready is not None)
        self._check_ready()
        for listener in list(self._iopub_listeners):
            listener(message)

    def _received(self, channel: str, frames: list[bytes]) -> None:
        """A message on shell, control or stdin: the gateway's own reply, or a client's."""
        message = self.decode(channel, frames)
        if message is None:
            return
        parent_id = message.parent_msg_id
        if message.msg_type == "kernel_info_reply" and self._ready is not None:
            self._info_seen = True
            self._check_ready()
        waiter = self._own_requests.pop(parent_id, None)
        if waiter is not None:
            if not waiter.called:
                waiter.callback(message)
            return
        client = self._routes.get(parent_id)
        if client is None:
            return  # its client left, or it answers nobody's request
        if channel != "stdin" and message.msg_type.endswith("_reply"):
            del self._routes[parent_id]
            client.pending.discard(parent_id)
        if not client.closed:
            client.receive(channel, message)

    def request(self, channel: str, msg_type: str, content: dict[str, Any]) -> defer.Deferred[messages.RawMessage]:
        """Send a message of the gateway's own on shell or control; a Deferred for its reply."""
        message = messages.new_message(msg_type, content, session=self.session_id)
        waiter: defer.Deferred[messages.RawMessage] = defer.Deferred()
        self._own_requests[message.msg_id] = waiter
        # Forget requests nobody waits on, so unanswered nudges do not pile up.
        waiter.addErrback(lambda failure: None)
        if len(self._own_requests) > 64:
            oldest = next(iter(self._own_requests))
            self._own_requests.pop(oldest)
        socket = self._dealers.get(channel)
        if socket is not None:
            socket.send(self.encode(message))
        return waiter
