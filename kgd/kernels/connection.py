"""Talking to one kernel over ZeroMQ, given only its connection info.

A ``KernelConnection`` needs the connection info (transport, ip, ports, key,
signature_scheme) and an ``IZmqSockets``; it knows nothing of the process.
It signs and checks messages, runs the kernel_info handshake, fans iopub
out to listeners, correlates the gateway's own requests with their replies,
and opens per-client sockets (``KernelClient``): each client has its own
shell, control and stdin sockets under one routing identity, so replies and
input requests go back to the client that asked.  Because it needs nothing
but connection info, another process could build one from stored info.
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

IopubListener = Callable[[messages.RawMessage], None]
ClientReceiver = Callable[[str, messages.RawMessage], None]


class KernelGone(Exception):
    """The kernel was shut down or died for good; nothing can be sent to it."""


class HandshakeTimedOut(Exception):
    """The kernel did not answer kernel_info in time."""


class KernelClient:
    """One client's own shell, control and stdin sockets to a kernel.

    The receiver can be swapped (``receive``) so a WebSocket layer can keep a
    client's sockets open while a session reconnects.  It uses only the
    connection's public methods.
    """

    def __init__(self, connection: "KernelConnection", receive: ClientReceiver) -> None:
        self.connection = connection
        self.receive = receive
        self._sockets: dict[str, IZmqSocket] = {}
        self.closed = False
        # One routing identity for all three sockets: the kernel sends
        # input_request on stdin to the identity that asked on shell.
        self.identity = uuid.uuid4().hex.encode("ascii")
        self._open()

    def _open(self) -> None:
        for channel in CLIENT_CHANNELS:
            self._sockets[channel] = self.connection.dealer(
                channel, lambda frames, channel=channel: self._received(channel, frames), self.identity
            )

    def _received(self, channel: str, frames: list[bytes]) -> None:
        message = self.connection.decode(channel, frames)
        if message is not None and not self.closed:
            self.receive(channel, message)

    def send(self, channel: str, message: messages.RawMessage) -> None:
        """Sign and send a client message to the kernel on shell, control or stdin."""
        if self.closed:
            raise KernelGone(self.connection.kernel_id)
        self.connection.activity.outgoing(message)
        self._sockets[channel].send(self.connection.encode(message))

    def reconnect(self) -> None:
        """Reopen the sockets after the kernel moved to new ports."""
        for socket in self._sockets.values():
            socket.close()
        self._open()

    def close(self) -> None:
        """Close the sockets and detach from the connection."""
        if self.closed:
            return
        self.closed = True
        for socket in self._sockets.values():
            socket.close()
        self._sockets.clear()
        self.connection.detach(self)


class KernelConnection:
    """The gateway's sockets to one kernel, and its clients' sockets."""

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
        self.bad_signatures = 0
        self.connection_info: dict[str, Any] = {}
        self.signer = messages.Signer(b"")
        self.closed = False
        self._own_sockets: dict[str, IZmqSocket] = {}
        self._clients: set[KernelClient] = set()
        self._iopub_listeners: list[IopubListener] = []
        self._own_requests: dict[str, defer.Deferred[messages.RawMessage]] = {}
        self._ready: defer.Deferred[None] | None = None
        self._iopub_seen = False
        self._info_seen = False
        if connection_info:
            self.connect(connection_info)

    # -- sockets -------------------------------------------------------------

    def connect(self, connection_info: Mapping[str, Any]) -> None:
        """Point every socket at these ports and key; nothing to do if they did not change."""
        if dict(connection_info) == self.connection_info:
            return
        self.connection_info = dict(connection_info)
        key = self.connection_info.get("key", b"")
        self.signer = messages.Signer(key.encode() if isinstance(key, str) else key)
        for socket in self._own_sockets.values():
            socket.close()
        info = self.connection_info
        self._own_sockets = {
            "iopub": self._sockets.subscriber(channel_url(info, "iopub"), self._iopub_received),
            "shell": self._sockets.dealer(channel_url(info, "shell"), self._own_reply_received),
            "control": self._sockets.dealer(channel_url(info, "control"), self._own_reply_received),
        }
        for client in list(self._clients):
            client.reconnect()

    def dealer(self, channel: str, receive: Callable[[list[bytes]], None], identity: bytes) -> IZmqSocket:
        """A DEALER socket to one of the kernel's channels, for a client."""
        return self._sockets.dealer(channel_url(self.connection_info, channel), receive, identity=identity)

    def client(self, receive: ClientReceiver) -> KernelClient:
        """Open a client's own shell, control and stdin sockets."""
        if self.closed:
            raise KernelGone(self.kernel_id)
        client = KernelClient(self, receive)
        self._clients.add(client)
        return client

    def detach(self, client: KernelClient) -> None:
        """Forget a closed client."""
        self._clients.discard(client)

    def clients(self) -> frozenset[KernelClient]:
        """The clients attached now."""
        return frozenset(self._clients)

    def close(self) -> None:
        """Close every socket, clients' included; fail the gateway's pending requests."""
        self.closed = True
        for client in list(self._clients):
            client.close()
        for socket in self._own_sockets.values():
            socket.close()
        self._own_sockets.clear()
        for waiter in self._own_requests.values():
            if not waiter.called:
                waiter.errback(KernelGone(self.kernel_id))
        self._own_requests.clear()

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
        until the SUB socket is subscribed, the kernel's status is lost.
        """
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

    def _own_reply_received(self, frames: list[bytes]) -> None:
        message = self.decode("shell", frames)
        if message is None:
            return
        parent_id = messages.parse_json_part(message.parent_header).get("msg_id")
        if message.msg_type == "kernel_info_reply" and self._ready is not None:
            self._info_seen = True
            self._check_ready()
        waiter = self._own_requests.pop(parent_id, None) if isinstance(parent_id, str) else None
        if waiter is not None and not waiter.called:
            waiter.callback(message)

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
        socket = self._own_sockets.get(channel)
        if socket is not None:
            socket.send(self.encode(message))
        return waiter
