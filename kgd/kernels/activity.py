"""What a kernel is doing and when it last did something, on the injected clock.

``KernelActivity`` owns the three fields of the REST model that change while
a kernel runs: ``execution_state`` (from iopub ``status`` messages, or set by
the supervisor while starting, restarting and once dead), ``last_activity``
(as Jupyter Server counts it: messages of the user's, not the gateway's
housekeeping) and ``connections`` (WebSocket connections attached).  Every
timestamp comes from the ``IReactorTime`` it is given, so tests advance a
``task.Clock`` instead of setting fields.
"""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet.interfaces import IReactorTime

from kgd.kernels import messages

# Messages that do not count as user activity (Jupyter Server's default list).
UNTRACKED_MESSAGE_TYPES = frozenset(
    {
        "comm_info_request",
        "comm_info_reply",
        "kernel_info_request",
        "kernel_info_reply",
        "shutdown_request",
        "shutdown_reply",
        "interrupt_request",
        "interrupt_reply",
        "debug_request",
        "debug_reply",
        "stream",
        "display_data",
        "update_display_data",
        "execute_input",
        "execute_result",
        "error",
        "status",
        "clear_output",
        "debug_event",
        "input_request",
        "input_reply",
    }
)


def clock_now(clock: IReactorTime) -> datetime:
    """The clock's now as a timezone-aware UTC datetime."""
    return datetime.fromtimestamp(clock.seconds(), timezone.utc)


class KernelActivity:
    """Execution state, last activity and connection count of one kernel."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.execution_state = "starting"
        self.last_activity = clock_now(clock)
        self.connections = 0

    def restore(self, last_activity: float) -> None:
        """Take the last activity an earlier daemon recorded (seconds since the epoch)."""
        self.last_activity = datetime.fromtimestamp(last_activity, timezone.utc)

    def touch(self) -> None:
        """Count now as activity (e.g. a pooled kernel handed out)."""
        self.last_activity = clock_now(self._clock)

    def connected(self) -> None:
        """A WebSocket connection attached."""
        self.connections += 1

    def disconnected(self) -> None:
        """A WebSocket connection detached."""
        self.connections -= 1

    def starting(self) -> None:
        """A launch began; an autorestart keeps showing as restarting until ready."""
        if self.execution_state != "restarting":
            self.execution_state = "starting"

    def ready(self) -> None:
        """The kernel answered kernel_info and its iopub flows."""
        if self.execution_state in ("starting", "restarting"):
            self.execution_state = "idle"

    def iopub(self, message: messages.RawMessage, *, handshaking: bool) -> None:
        """Track state and activity from one iopub message.

        While the start handshake runs, ``status`` messages do not change the
        state: it stays starting (or restarting) until ``ready``.
        """
        msg_type = message.msg_type
        parent_type = message.parent_msg_type
        if msg_type == "status":
            state = messages.parse_json_part(message.content).get("execution_state")
            if isinstance(state, str) and not handshaking:
                self.execution_state = state
            if state == "busy" and parent_type not in UNTRACKED_MESSAGE_TYPES:
                self.touch()
        elif msg_type not in UNTRACKED_MESSAGE_TYPES or (parent_type and parent_type not in UNTRACKED_MESSAGE_TYPES):
            self.touch()

    def outgoing(self, message: messages.RawMessage) -> None:
        """A client sent ``message`` to the kernel."""
        if message.msg_type not in UNTRACKED_MESSAGE_TYPES:
            self.touch()
