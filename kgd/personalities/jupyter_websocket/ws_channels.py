# The channels WebSocket, GET {base_url}api/kernels/{kernel_id}/channels?session_id=S
# (token in "Authorization: token T" or "?token=T"; both checked before the upgrade).
#
#   Handshake: unknown kernel -> 404 JSON; no "Upgrade: websocket" -> 400 JSON.
#   Sec-WebSocket-Protocol: "v1.kernel.websocket.jupyter.org" is selected only
#   when the client offers it; otherwise no subprotocol is answered (legacy).
#
#   Legacy (no subprotocol), client -> gateway:
#     text:   {"header":{...},"parent_header":{...},"metadata":{...},
#              "content":{...},"channel":"shell"|"control"|"stdin"}
#             (channel missing = shell; "buffers" absent or [])
#     binary: | u32 k | u32 start[k] | that JSON | buffer 1 | ... |   (big-endian)
#   Legacy, gateway -> client:
#     text:   {"header":H,"msg_id":..,"msg_type":..,"parent_header":P,
#              "metadata":M,"content":C,"buffers":[],"channel":"iopub"|...}
#             H, P, M, C are the kernel's bytes, spliced in, never re-encoded
#     binary: the same layout as the client's, for messages with buffers
#   v1.kernel.websocket.jupyter.org, both directions, binary only:
#     | u64 n | u64 offset[n] | channel | H | P | M | C | buffers... |
#     (little-endian; a text frame is refused)
#
#   The gateway signs what goes to the kernel and checks what comes back; the
#   key never crosses this socket.  Kernel restarts and deaths arrive as
#   iopub {"msg_type":"status","content":{"execution_state":"restarting"|"dead"},
#   "parent_header":{}}.
#
#   Close codes sent by the gateway:
#     1000 kernel shut down (DELETE, culling), or replaced by a newer
#          connection with the same session_id
#     1001 the gateway is stopping and its kernels with it
#     1003 a text frame on the v1 subprotocol
#     1007 a frame that is not a Jupyter message (bad JSON, truncated table)
#     1008 a message for a channel a client cannot write (iopub, unknown),
#          or a client not reading while --max-client-backlog of output
#          (pongs to its pings included) waits
#     1009 a message over --max-message-size
#     1011 the kernel died and could not be restarted
#     1012 the gateway is restarting and its kernels live on (--on-stop
#          detach): reconnect with the same session_id
"""The channels WebSocket: Jupyter messages between clients and a kernel.

``Channels`` is what the REST routes hand an upgrade to: it keeps one
``KernelSessions`` per kernel with open or buffered sessions, and builds the
``WebSocketResource`` for a request.  ``ChannelsProtocol`` is the Autobahn
protocol of one connection: it decodes what the client sends with
``kgd.kernels.messages`` and passes it to its session's sockets, and encodes
what the kernel sends in the format the connection negotiated.  Frames go out
with TCP_NODELAY and as single WebSocket frames, so a small reply is on the
wire at once instead of waiting for the client's delayed ACK.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorCore, IReactorTime
from twisted.logger import Logger
from twisted.web.resource import IResource

from kgd.kernels import messages
from kgd.kernels.kernel import Kernel, KernelGone
from kgd.kernels.messages import RawMessage
from kgd.metrics import Metrics
from kgd.personalities.jupyter_websocket.jupyter_websocket_settings import JupyterWebsocketSettings
from kgd.personalities.jupyter_websocket.session_buffer import BufferLimits
from kgd.web.errors import HTTPError
from kgd.personalities.jupyter_websocket.channel_sessions import (
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    CLOSE_NORMAL,
    ChannelSession,
    KernelSessions,
)

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_PONG = 0xA

_OPEN = WebSocketProtocol.STATE_OPEN


@dataclass(frozen=True)
class ChannelsSettings:
    """What the channels WebSocket is configured with."""

    ping_interval: float = 30.0
    max_message_size: int = 10 * 1024**2
    max_client_backlog: int = 64 * 1024**2
    buffer: BufferLimits = BufferLimits(10000, 64 * 1024**2, 300.0)
    #: Kernels outlive the daemon (``--on-stop detach``): connections are closed with 1012, not 1001.
    kernels_outlive_stop: bool = False
    #: WebSockets served at once (0: no limit); one more is refused with 503 before the upgrade.
    max_connections: int = 0

    @classmethod
    def from_settings(cls, settings: JupyterWebsocketSettings) -> "ChannelsSettings":
        """Take ``--ws-ping-interval``, ``--max-message-size``, ``--max-client-backlog`` and ``--session-buffer-*``."""
        return cls(
            ping_interval=settings.ws_ping_interval,
            max_message_size=settings.max_message_size,
            max_client_backlog=settings.max_client_backlog,
            buffer=BufferLimits(
                settings.session_buffer_messages, settings.session_buffer_bytes, settings.session_buffer_age
            ),
            kernels_outlive_stop=settings.on_stop == "detach",
            max_connections=settings.max_connections,
        )

    def protocol_options(self) -> dict[str, Any]:
        """Autobahn's options for these settings.

        The pong timeout is Jupyter Server's, max(3 x interval, 30 s).  Errors
        close with a close frame and a code (``failByDrop=False``) rather
        than a dropped TCP connection, so a client can tell what went wrong.
        Text frames are checked as UTF-8 by the JSON decoder, which reads
        them anyway, so Autobahn does not validate them a second time.
        """
        return {
            "tcpNoDelay": True,
            "autoPingInterval": self.ping_interval,
            "autoPingTimeout": max(3 * self.ping_interval, 30.0) if self.ping_interval else 0,
            "maxMessagePayloadSize": self.max_message_size,
            "maxFramePayloadSize": self.max_message_size,
            "failByDrop": False,
            "utf8validateIncoming": False,
            "openHandshakeTimeout": 10,
            "closeHandshakeTimeout": 2,
        }


class ChannelsProtocol(WebSocketServerProtocol):
    """One client's channels WebSocket to one kernel."""

    _log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._channels: Channels | None = None
        self._kernel: Kernel | None = None
        self._sessions: KernelSessions | None = None
        self._session_id: str | None = None
        self._session: ChannelSession | None = None
        self._v1 = False
        self._backlog: list[bytes] | None = None  # frames held while the client is not reading
        self._backlog_bytes = 0

    def bind(self, channels: "Channels", kernel: Kernel, session_id: str | None) -> None:
        """Say which kernel and session this connection is for (before the handshake)."""
        self._channels = channels
        self._kernel = kernel
        self._session_id = session_id

    @property
    def _kernel_id(self) -> str:
        return self._kernel.kernel_id if self._kernel is not None else "?"

    # -- Autobahn hooks ------------------------------------------------------

    def connectionMade(self) -> None:
        """Turn Nagle's algorithm off, then let Autobahn start.

        Autobahn means to do it (``tcpNoDelay``) but reads the option before
        copying it from the factory, so the attempt fails silently; with
        Nagle on, each small frame after the first waits for the client's
        delayed ACK (the reference gateway's 40 ms round trips).
        """
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:  # not TCP (a Unix socket)
                pass
        super().connectionMade()
        # twisted.web's HTTPChannel was the transport's producer until the
        # upgrade; from now on the transport tells this protocol when the
        # client is not reading, so kernel output cannot pile up without bound.
        try:
            self.transport.unregisterProducer()
        except RuntimeError:  # nothing registered: a connection made without twisted.web
            pass
        self.transport.registerProducer(self, True)

    # -- IPushProducer: flow control towards a client that is not reading -----

    def pauseProducing(self) -> None:
        """The transport's buffer is full: hold kernel messages here, counted, until it drains."""
        if self._backlog is None:
            self._backlog = []
            self._backlog_bytes = 0

    def resumeProducing(self) -> None:
        """The client caught up: hand held frames to the transport, in order, until it is full again.

        The transport pauses this producer from within ``write`` once
        its buffer passes its ``bufferSize``; what is left stays held here,
        counted against the bound.  Handing over the whole backlog instead
        would double it: the transport's buffer, then its join into one
        bytes object to send.
        """
        backlog, self._backlog = self._backlog, None
        self._backlog_bytes = 0
        for index, frame in enumerate(backlog or ()):
            if self.state != _OPEN:
                return
            self.transport.write(frame)
            if self._backlog is not None:  # paused again
                assert backlog is not None
                rest = backlog[index + 1 :]
                self._backlog[:0] = rest
                self._backlog_bytes += sum(map(len, rest))
                return

    def stopProducing(self) -> None:
        """The connection is going: what is held will never be sent."""
        self._backlog = None

    def onConnect(self, request: ConnectionRequest) -> str | None:
        """Select the v1 subprotocol if, and only if, the client offers it."""
        self._v1 = messages.V1_SUBPROTOCOL in request.protocols
        return messages.V1_SUBPROTOCOL if self._v1 else None

    def onOpen(self) -> None:
        assert self._channels is not None and self._kernel is not None
        try:
            self._sessions = self._channels.sessions(self._kernel)
            self._session = self._sessions.connect(self, self._session_id)
        except KernelGone:
            self.end(CLOSE_NORMAL, "kernel shut down")
            return
        self._log.info(
            "channels opened: kernel {kernel_id} session {session} ({protocol}) from {peer}",
            kernel_id=self._kernel_id,
            session=self._session.label,
            protocol="v1" if self._v1 else "legacy",
            peer=self.peer,
            event="channels_opened",
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self._session
        if session is None:
            return
        try:
            if self._v1:
                if not isBinary:
                    self._refuse(CLOSE_UNSUPPORTED_DATA, "the v1 subprotocol takes binary frames only")
                    return
                channel, message = messages.from_ws_v1(payload)
            elif isBinary:
                channel, message = messages.from_ws_legacy_binary(payload)
            else:
                channel, message = messages.from_ws_json(payload)
        except messages.UnknownChannel as error:
            self._refuse(CLOSE_POLICY_VIOLATION, str(error))
            return
        except messages.MalformedMessage as error:
            self._refuse(CLOSE_INVALID_PAYLOAD, str(error))
            return
        try:
            session.send(channel, message)
        except KernelGone:
            self.end(CLOSE_NORMAL, "kernel shut down")
            return
        self._relayed(channel, "in", len(payload))

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        channels, self._channels = self._channels, None
        if channels is not None:
            channels.connection_ended()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        session, self._session = self._session, None
        if session is not None and self._sessions is not None:
            self._sessions.disconnect(session, self)
        if self._kernel is None:
            return
        self._log.info(
            "channels closed: kernel {kernel_id}: code {code}, {reason}",
            kernel_id=self._kernel_id,
            code=self.localCloseCode if self.closedByMe else code,
            reason=_text(self.localCloseReason) if self.closedByMe else reason or "",
            event="channels_closed",
        )

    # -- to the client -------------------------------------------------------

    def deliver(self, channel: str, message: RawMessage) -> None:
        """Send one kernel message, as a single frame in the negotiated format.

        Not Autobahn's ``sendMessage``: its size limit is for what clients
        send, not for a kernel's output, and it copies the payload into its
        frame.  Here the frame is made once per message and format and
        shared by every connection it goes to (``encode_frame``).  No
        extension is negotiated, so a message is one final unmasked frame.
        """
        if self.state != _OPEN:
            return
        v1 = self._v1
        try:
            frame, size = message.derived(("ws", channel, v1), lambda: encode_frame(channel, message, v1))
        except messages.MalformedMessage as error:
            self._log.warn(
                "channels: kernel {kernel_id}: {msg_type} message not sent: {error}",
                kernel_id=self._kernel_id,
                msg_type=message.msg_type,
                error=error,
            )
            return
        self._relayed(channel, "out", size)
        self._send_or_hold(frame)

    def onPing(self, payload: bytes) -> None:
        """Answer a ping in turn with kernel output: a client that pings and never reads is bounded alike."""
        if self.state == _OPEN:
            self._send_or_hold(frame_header(OPCODE_PONG, len(payload)) + payload)

    def _send_or_hold(self, frame: bytes) -> None:
        """Write a frame, or hold it while the client is not reading; past the bound, close (1008).

        The transport sends a single bytes object in its empty buffer as it
        is, without joining it again."""
        if self._backlog is None:
            self.transport.write(frame)
            return
        self._backlog.append(frame)
        self._backlog_bytes += len(frame)
        limit = self._channels.settings.max_client_backlog if self._channels is not None else 0
        if self._backlog_bytes > limit:
            # Its session keeps what follows (within its own bounds) for a reconnect.
            self._backlog = None
            self._refuse(CLOSE_POLICY_VIOLATION, f"client not reading: over {limit} bytes of output held")

    def _relayed(self, channel: str, direction: str, nbytes: int) -> None:
        if self._channels is not None:
            self._channels.metrics.message_relayed(channel, direction, nbytes)

    def end(self, code: int, reason: str) -> defer.Deferred[Any]:
        """Close from the gateway's side with ``code``; the session has let go of us.

        Fires once the connection is closed: the client answered the close,
        or did not within the close handshake timeout and was dropped.
        """
        self._session = None
        if self.state == _OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123))
        return self.is_closed

    def _refuse(self, code: int, reason: str) -> None:
        self._log.warn(
            "channels: kernel {kernel_id}: closing connection from {peer}: code {code}, {reason}",
            kernel_id=self._kernel_id,
            peer=self.peer,
            code=code,
            reason=reason,
            event="channels_refused",
        )
        session, self._session = self._session, None
        if session is not None and self._sessions is not None:
            self._sessions.disconnect(session, self)
        self.end(code, reason)


def encode_frame(channel: str, message: RawMessage, v1: bool) -> tuple[bytes, int]:
    """One WebSocket frame of ``message`` (v1 binary or legacy JSON), and its payload size.

    Made once per message and format (``RawMessage.derived``) and shared by
    every connection it goes to: the codec's pieces (the kernel's own parts,
    views of ZeroMQ's message for large ones, between a little JSON glue)
    joined once, the only copy of a kernel's output in kgd.
    """
    if v1:
        pieces, binary = messages.to_ws_v1_pieces(channel, message), True
    else:
        pieces, binary = messages.to_ws_legacy_pieces(channel, message)
    size = sum(map(len, pieces))
    return b"".join([frame_header(OPCODE_BINARY if binary else OPCODE_TEXT, size), *pieces]), size


def frame_header(opcode: int, size: int) -> bytes:
    """The header of a final, unmasked WebSocket frame (RFC 6455, 5.2) of ``size`` bytes."""
    if size < 126:
        return struct.pack("!BB", 0x80 | opcode, size)
    if size < 0x10000:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


class ChannelsFactory(WebSocketServerFactory):
    """The one Autobahn factory of the channels WebSocket (shared options and timers)."""

    protocol = ChannelsProtocol


class _Upgrade:
    """Builds the protocol of one upgrade request, bound to its kernel and session."""

    def __init__(self, channels: "Channels", kernel: Kernel, session_id: str | None) -> None:
        self._channels = channels
        self._kernel = kernel
        self._session_id = session_id

    def buildProtocol(self, addr: IAddress) -> ChannelsProtocol:
        protocol = self._channels.factory.buildProtocol(addr)
        protocol.bind(self._channels, self._kernel, self._session_id)
        self._channels.connections += 1
        return protocol


class Channels:
    """The channels WebSockets of every kernel, by kernel id."""

    def __init__(self, clock: IReactorTime, settings: ChannelsSettings, metrics: Metrics | None = None) -> None:
        self._clock = clock
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.factory = ChannelsFactory(server="kgd", reactor=clock)
        self.factory.setProtocolOptions(**settings.protocol_options())
        self._kernels: dict[str, KernelSessions] = {}
        #: Channels WebSockets from upgrade to connection lost.
        self.connections = 0
        if IReactorCore.providedBy(clock):
            # Before the services stop: the reactor would drop the sockets without a close frame.
            clock.addSystemEventTrigger("before", "shutdown", self.close_all)

    def admit(self) -> None:
        """Refuse one more WebSocket past ``max_connections``: a 503 before the upgrade, never a 101 that goes nowhere."""
        limit = self.settings.max_connections
        if limit and self.connections >= limit:
            self.metrics.connections_refused.labels("max_connections").inc()
            raise HTTPError(503, f"The gateway serves at most {limit} WebSocket connections; try again later")

    def connection_ended(self) -> None:
        """A channels WebSocket's TCP connection is gone: its place is free."""
        self.connections -= 1

    def resource(self, kernel: Kernel, session_id: str | None) -> IResource:
        """The resource that upgrades this request to a channels WebSocket of ``kernel``."""
        return WebSocketResource(_Upgrade(self, kernel, session_id))

    def sessions(self, kernel: Kernel) -> KernelSessions:
        """The sessions of ``kernel``, made on first use; ``KernelGone`` once it is gone."""
        if kernel.gone:
            raise KernelGone(kernel.kernel_id)
        sessions = self._kernels.get(kernel.kernel_id)
        if sessions is None or sessions.kernel is not kernel:
            sessions = KernelSessions(kernel, self._clock, self.settings.buffer, self._forget)
            self._kernels[kernel.kernel_id] = sessions
        return sessions

    def close_all(self) -> defer.Deferred[Any]:
        """Close every channels WebSocket as the gateway stops; fires once all are closed.

        1012 tells a client its kernel lives on and it should reconnect; 1001 that the kernel goes too.
        """
        if self.settings.kernels_outlive_stop:
            code, reason = CLOSE_SERVICE_RESTART, "gateway restarting; the kernel lives on, reconnect"
        else:
            code, reason = CLOSE_GOING_AWAY, "gateway shutting down"
        closing = []
        for sessions in list(self._kernels.values()):
            closing.extend(sessions.end_all(code, reason))
        return defer.DeferredList(closing, consumeErrors=True)

    def _forget(self, sessions: KernelSessions) -> None:
        if self._kernels.get(sessions.kernel.kernel_id) is sessions:
            del self._kernels[sessions.kernel.kernel_id]


def _text(reason: bytes | None) -> str:
    return reason.decode("utf-8", "replace") if reason else ""
