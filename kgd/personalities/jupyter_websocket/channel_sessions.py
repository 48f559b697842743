"""The channel sessions of one kernel: who gets which message, what waits for a reconnect.

Every channels WebSocket belongs to a *session*, named by the ``session_id``
query parameter Jupyter clients send (not to be confused with the
``/api/sessions`` documents).  A session owns a ``KernelClient`` (its own
shell, control and stdin sockets), so replies and input requests reach only
the connection that asked; every iopub message reaches every session.

Following Jupyter Server:

- a second connection with the session_id of an open one replaces it (the
  old one is a stale connection the client has given up on);
- when a session's connection drops, its ``KernelClient`` stays open and its
  messages (iopub and its replies) go to a bounded ``SessionBuffer``; a
  reconnect with the same session_id replays them in order, a connection
  with another session_id discards them, and so does ``--session-buffer-age``
  seconds without a reconnect;
- on connect the kernel is "nudged": ``kernel_info_request`` is sent on the
  session's shell every half second until iopub traffic reaches
  the connection (clients expect a ``status`` busy/idle on connect); the
  replies to these requests are the gateway's and are not forwarded, and the
  ``status`` messages around them reach only the nudged session (Jupyter
  Server fans them out to every connection: with N connections, N connects
  cost N² frames).

Connections are anything with ``deliver`` and ``end`` (the WebSocket
protocol in ``channels``), so this module knows nothing of Autobahn.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from kgd.kernels import messages
from kgd.kernels.kernel import Kernel, KernelGone
from kgd.kernels.messages import RawMessage
from kgd.personalities.jupyter_websocket.session_buffer import BufferedMessage, BufferLimits, SessionBuffer

log = Logger()

NUDGE_INTERVAL = 0.5
NUDGE_TIMEOUT = 10.0

# WebSocket close codes this module asks for (RFC 6455, section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
#: The gateway restarts and its kernels live on: reconnect (RFC 6455's "service restart").
CLOSE_SERVICE_RESTART = 1012
CLOSE_INTERNAL_ERROR = 1011


class Connection(Protocol):
    """One client connection, as the sessions see it."""

    def deliver(self, channel: str, message: RawMessage) -> None:
        """Send a kernel message to the client."""

    def end(self, code: int, reason: str) -> Any:
        """Close the connection from the gateway's side; the session no longer uses it.

        Returns a Deferred that fires once the connection is closed.
        """


class ChannelSession:
    """One client session of a kernel: its sockets, and its connection or its buffer."""

    def __init__(self, sessions: "KernelSessions", key: object, session_id: str | None) -> None:
        self._sessions = sessions
        self.key = key
        self.session_id = session_id
        self.connection: Connection | None = None
        self.buffer: SessionBuffer | None = None
        self.expiry: IDelayedCall | None = None
        self._nudge_ids: set[str] = set()
        self._nudge_call: IDelayedCall | None = None
        self._nudge_deadline = 0.0
        self.client = sessions.kernel.client(self._reply)

    @property
    def label(self) -> str:
        """How the log names this session."""
        return self.session_id or "(no session_id)"

    def send(self, channel: str, message: RawMessage) -> None:
        """Send a client's message to the kernel on shell, control or stdin."""
        self.client.send(channel, message)

    def deliver(self, channel: str, message: RawMessage) -> None:
        """Pass a kernel message to the connection, or keep it while there is none."""
        if self._nudge_call is not None and channel == "iopub":
            self.stop_nudging()
        connection = self.connection
        if connection is not None:
            connection.deliver(channel, message)
        elif self.buffer is not None:
            if self.buffer.append(channel, message) and self.buffer.dropped == 1:
                log.warn(
                    "kernel {kernel_id} session {session}: buffer limits reached, dropping its oldest messages",
                    kernel_id=self._sessions.kernel.kernel_id,
                    session=self.label,
                    event="session_buffer_overflow",
                )

    def _reply(self, channel: str, message: RawMessage) -> None:
        if self._nudge_ids and message.parent_msg_id in self._nudge_ids:
            self._nudge_ids.discard(message.parent_msg_id)
            return
        self.deliver(channel, message)

    # -- nudging -------------------------------------------------------------

    def nudge(self, clock: IReactorTime, interval: float, timeout: float) -> None:
        """Ask kernel_info until iopub reaches this session (not while the kernel is busy).

        A busy kernel would queue the requests behind the running cell, and
        its output shows that iopub flows anyway.  Shell only: Jupyter
        Server also asks on control, which doubles the status messages
        clients see and tells nothing more about an idle kernel.
        """
        if self._sessions.kernel.execution_state == "busy":
            return
        self._nudge_deadline = clock.seconds() + timeout
        self._nudge_once(clock, interval)

    def _nudge_once(self, clock: IReactorTime, interval: float) -> None:
        self._nudge_call = None
        if self.client.closed or clock.seconds() >= self._nudge_deadline:
            return
        request = messages.new_message("kernel_info_request", {}, session=self._sessions.kernel.session_id)
        self._nudge_ids.add(request.msg_id)
        self._sessions.nudge_owners[request.msg_id] = self
        try:
            self.client.send("shell", request)
        except KernelGone:
            return
        self._nudge_call = clock.callLater(interval, self._nudge_once, clock, interval)

    def stop_nudging(self) -> None:
        """Send no more kernel_info_requests for this session."""
        if self._nudge_call is not None:
            if self._nudge_call.active():
                self._nudge_call.cancel()
            self._nudge_call = None

    # -- end -----------------------------------------------------------------

    def close(self) -> None:
        """Release the sockets, the buffer and the timers."""
        self.stop_nudging()
        for msg_id in self._nudge_ids:
            self._sessions.nudge_owners.pop(msg_id, None)
        if self.expiry is not None and self.expiry.active():
            self.expiry.cancel()
        self.expiry = None
        self.buffer = None
        self.connection = None
        self.client.close()


class KernelSessions:
    """The channel sessions of one kernel, and the kernel's iopub fan-out to them."""

    def __init__(
        self,
        kernel: Kernel,
        clock: IReactorTime,
        limits: BufferLimits,
        on_empty: Callable[["KernelSessions"], None],
        *,
        nudge_interval: float = NUDGE_INTERVAL,
        nudge_timeout: float = NUDGE_TIMEOUT,
    ) -> None:
        self.kernel = kernel
        self._clock = clock
        self._limits = limits
        self._on_empty = on_empty
        self._nudge_interval = nudge_interval
        self._nudge_timeout = nudge_timeout
        self._sessions: dict[object, ChannelSession] = {}
        #: The session each pending nudge belongs to: its status messages go to that session only.
        self.nudge_owners: dict[str, ChannelSession] = {}
        self._anonymous = itertools.count()
        self._died = False
        kernel.add_iopub_listener(self._iopub)
        kernel.add_gone_listener(self._kernel_gone)

    def connect(self, connection: Connection, session_id: str | None) -> ChannelSession:
        """Attach a new connection; replays a buffered session, replaces a stale one.

        Raises ``KernelGone`` if the kernel was shut down meanwhile.
        """
        if self.kernel.gone:
            raise KernelGone(self.kernel.kernel_id)
        key: object = session_id if session_id else ("anonymous", next(self._anonymous))
        session = self._sessions.get(key)
        backlog: list[BufferedMessage] = []
        if session is not None and session.connection is not None:
            log.info(
                "kernel {kernel_id} session {session}: replacing stale connection",
                kernel_id=self.kernel.kernel_id,
                session=session.label,
            )
            stale, session.connection = session.connection, None
            self.kernel.activity.disconnected()
            stale.end(CLOSE_NORMAL, "replaced by a newer connection of the same session")
        elif session is not None:
            if session.expiry is not None and session.expiry.active():
                session.expiry.cancel()
            session.expiry = None
            if session.buffer is not None:
                backlog = session.buffer.drain()
                log.info(
                    "kernel {kernel_id} session {session}: reconnected, replaying {count} buffered messages"
                    " ({dropped} dropped over the limits)",
                    kernel_id=self.kernel.kernel_id,
                    session=session.label,
                    count=len(backlog),
                    dropped=session.buffer.dropped,
                    event="session_replay",
                )
            session.buffer = None
        else:
            self._discard_buffers()
            session = ChannelSession(self, key, session_id or None)
            self._sessions[key] = session
        session.connection = connection
        self.kernel.activity.connected()
        for entry in backlog:
            connection.deliver(entry.channel, entry.message)
        session.nudge(self._clock, self._nudge_interval, self._nudge_timeout)
        return session

    def disconnect(self, session: ChannelSession, connection: Connection) -> None:
        """A connection closed: buffer its session for a reconnect, or release it."""
        if session.connection is not connection:
            return
        session.connection = None
        self.kernel.activity.disconnected()
        if session.session_id is None or self.kernel.gone or not self._limits.enabled:
            self._release(session)
            return
        session.stop_nudging()
        session.buffer = SessionBuffer(self._clock, self._limits, f"{self.kernel.kernel_id}/{session.label}")
        session.expiry = self._clock.callLater(self._limits.age, self._expire, session)
        log.info(
            "kernel {kernel_id} session {session}: connection closed, buffering its messages",
            kernel_id=self.kernel.kernel_id,
            session=session.label,
        )

    def _expire(self, session: ChannelSession) -> None:
        session.expiry = None
        if session.connection is None and self._sessions.get(session.key) is session:
            log.info(
                "kernel {kernel_id} session {session}: no reconnect within {age:g} s, buffer discarded",
                kernel_id=self.kernel.kernel_id,
                session=session.label,
                age=self._limits.age,
            )
            self._release(session)

    def _discard_buffers(self) -> None:
        """A new session arrived: buffered sessions will not be resumed (as Jupyter Server)."""
        for session in [s for s in self._sessions.values() if s.connection is None]:
            log.info(
                "kernel {kernel_id} session {session}: a new session connected, buffer discarded",
                kernel_id=self.kernel.kernel_id,
                session=session.label,
            )
            self._release(session, detach=False)

    def _release(self, session: ChannelSession, detach: bool = True) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        session.close()
        if detach and not self._sessions:
            self._detach()

    def _detach(self) -> None:
        self.kernel.remove_iopub_listener(self._iopub)
        self.kernel.remove_gone_listener(self._kernel_gone)
        self._on_empty(self)

    # -- kernel events -------------------------------------------------------

    def _iopub(self, message: RawMessage) -> None:
        if message.msg_type == "status" and not self._died and messages.part_contains(message.content, b'"dead"'):
            # Kernels never report "dead"; the gateway does, when it gives up restarting.
            try:
                self._died = messages.parse_json_part(message.content).get("execution_state") == "dead"
            except messages.MalformedMessage:
                pass
        owner = self.nudge_owners.get(message.parent_msg_id) if self.nudge_owners else None
        if owner is not None:
            # The busy/idle around a nudge tells only the nudged session something: with
            # thousands of connections, fanning each out to all of them was the cost of a connect.
            if message.msg_type == "status" and messages.part_contains(message.content, b'"idle"'):
                del self.nudge_owners[message.parent_msg_id]
            owner.deliver("iopub", message)
            return
        for session in list(self._sessions.values()):
            session.deliver("iopub", message)
        # The frame its connections shared (``RawMessage.derived``) is written or held by them now;
        # a disconnected session's buffer keeps the message, and must not keep that copy with it.
        message.forget_derived()

    def _kernel_gone(self, kernel: Kernel) -> None:
        if self._died:
            self.end_all(CLOSE_INTERNAL_ERROR, "kernel died")
        else:
            self.end_all(CLOSE_NORMAL, "kernel shut down")

    def end_all(self, code: int, reason: str) -> list[Any]:
        """Close every connection with ``code`` and release every session.

        Returns a Deferred per connection that fires once it is closed.
        """
        sessions, self._sessions = list(self._sessions.values()), {}
        closing = []
        for session in sessions:
            connection = session.connection
            session.close()
            if connection is not None:
                self.kernel.activity.disconnected()
                closing.append(connection.end(code, reason))
        self._detach()
        return closing
