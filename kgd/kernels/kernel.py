"""One kernel: its process, its ZeroMQ sockets, its state and its lifecycle.

A ``Kernel`` launches through an ``IKernelLauncher`` and talks to the kernel
over sockets from ``IZmqSockets``.  It counts as started once the kernel
answers ``kernel_info_request`` and its iopub stream is flowing.  It tracks
``execution_state`` from iopub ``status`` messages and ``last_activity`` as
Jupyter Server does, interrupts as the kernelspec's ``interrupt_mode`` says,
restarts under the same id and ports, restarts by itself when the process
dies (a few times, then it is dead), and shuts down politely before it
signals: ``shutdown_request``, then TERM, then KILL, to the whole group.

WebSocket connections attach as ``KernelClient`` objects: each has its own
shell, control and stdin sockets, so replies and input requests go back to
the connection that asked, while every iopub message goes to every listener.
"""

from __future__ import annotations

import signal
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from jupyter_client.kernelspec import KernelSpec
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from kgd.interfaces import IKernelLauncher, IRunningKernel, IZmqSocket, IZmqSockets
from kgd.kernels import messages
from kgd.kernels.zmq_sockets import channel_url
from kgd.kernels.kernel_request import InvalidKernelRequest

log = Logger()

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

CLIENT_CHANNELS = ("shell", "control", "stdin")

IopubListener = Callable[[messages.RawMessage], None]
ClientReceiver = Callable[[str, messages.RawMessage], None]


class KernelStartError(Exception):
    """A kernel did not start: it died, timed out, or could not be launched."""


class KernelDiedStarting(KernelStartError):
    """The kernel process ended before it answered kernel_info."""


class KernelGone(Exception):
    """The kernel was shut down or died for good; nothing can be sent to it."""


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as Jupyter Server writes ``last_activity``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RestartPolicy:
    """When an unexpected death is restarted, and when the kernel is declared dead.

    Like jupyter_client's restarter: up to ``limit`` restarts in a row; a
    kernel that stays up for ``stable_seconds`` after a restart starts the
    count again.
    """

    def __init__(self, limit: int = 5, stable_seconds: float = 10.0) -> None:
        self.limit = limit
        self.stable_seconds = stable_seconds
        self._count = 0
        self._last: float | None = None

    def should_restart(self, now: float) -> bool:
        """Record a death at ``now`` and say whether to restart."""
        if self._last is not None and now - self._last > self.stable_seconds:
            self._count = 0
        self._count += 1
        self._last = now
        return self._count <= self.limit


class KernelClient:
    """One connection's own shell, control and stdin sockets to a kernel.

    The receiver can be swapped (``receive``) so a WebSocket layer can keep a
    client's sockets open while a session reconnects.
    """

    def __init__(self, kernel: "Kernel", receive: ClientReceiver) -> None:
        self.kernel = kernel
        self.receive = receive
        self._sockets: dict[str, IZmqSocket] = {}
        self.closed = False
        # One routing identity for all three sockets: the kernel sends
        # input_request on stdin to the identity that asked on shell.
        self._identity = uuid.uuid4().hex.encode("ascii")
        self._open()

    def _open(self) -> None:
        for channel in CLIENT_CHANNELS:
            self._sockets[channel] = self.kernel._sockets.dealer(
                channel_url(self.kernel.connection_info, channel),
                lambda frames, channel=channel: self._received(channel, frames),
                identity=self._identity,
            )

    def _received(self, channel: str, frames: list[bytes]) -> None:
        message = self.kernel._decode(channel, frames)
        if message is not None and not self.closed:
            self.receive(channel, message)

    def send(self, channel: str, message: messages.RawMessage) -> None:
        """Sign and send a client message to the kernel on shell, control or stdin."""
        if self.closed:
            raise KernelGone(self.kernel.kernel_id)
        self.kernel._note_outgoing(message)
        self._sockets[channel].send(messages.to_zmq(message, self.kernel.signer))

    def reconnect(self) -> None:
        """Reopen the sockets after the kernel moved to new ports."""
        for socket in self._sockets.values():
            socket.close()
        self._open()

    def close(self) -> None:
        """Close the sockets and detach from the kernel."""
        if self.closed:
            return
        self.closed = True
        for socket in self._sockets.values():
            socket.close()
        self._sockets.clear()
        self.kernel._clients.discard(self)


class Kernel:
    """A running kernel, known by a stable id across restarts."""

    def __init__(
        self,
        kernel_id: str,
        spec_name: str,
        spec: KernelSpec,
        *,
        launcher: IKernelLauncher,
        sockets: IZmqSockets,
        clock: IReactorTime,
        env: Mapping[str, str],
        cwd: str,
        start_timeout: float = 60.0,
        start_attempts: int = 3,
        shutdown_wait: float = 5.0,
        kill_wait: float = 5.0,
        nudge_interval: float = 1.0,
        restart_policy: RestartPolicy | None = None,
        on_dead: Callable[["Kernel"], None] | None = None,
    ) -> None:
        self.kernel_id = kernel_id
        self.spec_name = spec_name
        self.spec = spec
        self._launcher = launcher
        self._sockets = sockets
        self._clock = clock
        self._env = dict(env)
        self._cwd = cwd
        self._start_timeout = start_timeout
        self._start_attempts = start_attempts
        self._shutdown_wait = shutdown_wait
        self._kill_wait = kill_wait
        self._nudge_interval = nudge_interval
        self._restart_policy = restart_policy or RestartPolicy()
        self._on_dead = on_dead
        self.session_id = uuid.uuid4().hex
        self.execution_state = "starting"
        self.last_activity = utcnow()
        self.connections = 0
        self.bad_signatures = 0
        self.connection_info: dict[str, Any] = {}
        self.signer = messages.Signer(b"")
        self.running: IRunningKernel | None = None
        self._kernel_sockets: dict[str, IZmqSocket] = {}
        self._clients: set[KernelClient] = set()
        self._iopub_listeners: list[IopubListener] = []
        self._gone_listeners: list[Callable[["Kernel"], None]] = []
        self._own_requests: dict[str, defer.Deferred[messages.RawMessage]] = {}
        self._ready: defer.Deferred[None] | None = None
        self._iopub_seen = False
        self._info_seen = False
        self._expected_end = False
        self.gone = False

    # -- model ---------------------------------------------------------------

    def model(self) -> dict[str, Any]:
        """The REST model of this kernel, as Jupyter Server shapes it."""
        return {
            "id": self.kernel_id,
            "name": self.spec_name,
            "last_activity": isoformat(self.last_activity),
            "execution_state": self.execution_state,
            "connections": self.connections,
        }

    # -- listeners -----------------------------------------------------------

    def add_iopub_listener(self, listener: IopubListener) -> None:
        """Receive every iopub message of this kernel, gateway status messages included."""
        self._iopub_listeners.append(listener)

    def remove_iopub_listener(self, listener: IopubListener) -> None:
        """Stop receiving iopub messages."""
        if listener in self._iopub_listeners:
            self._iopub_listeners.remove(listener)

    def add_gone_listener(self, listener: Callable[["Kernel"], None]) -> None:
        """Be told once, after the kernel was shut down or died for good and its sockets closed."""
        self._gone_listeners.append(listener)

    def remove_gone_listener(self, listener: Callable[["Kernel"], None]) -> None:
        """Stop being told that the kernel is gone."""
        if listener in self._gone_listeners:
            self._gone_listeners.remove(listener)

    def client(self, receive: ClientReceiver) -> KernelClient:
        """Open a connection's own shell, control and stdin sockets."""
        if self.gone:
            raise KernelGone(self.kernel_id)
        client = KernelClient(self, receive)
        self._clients.add(client)
        return client

    # -- lifecycle -----------------------------------------------------------

    @defer.inlineCallbacks
    def start(self) -> Any:
        """Launch the kernel and wait until it answers kernel_info.

        A process that dies before answering is launched again on fresh
        ports, up to ``start_attempts`` times in all: the ports jupyter_client
        found free can be taken by another process before the kernel binds
        them, which happens when many kernels start at once.
        """
        for attempt in range(1, self._start_attempts + 1):
            try:
                yield self._launch(None)
                return
            except KernelDiedStarting as error:
                if attempt == self._start_attempts or self.gone:
                    raise
                log.warn(
                    "kernel {kernel_id}: {error}; launching it again on fresh ports (attempt {attempt})",
                    kernel_id=self.kernel_id,
                    error=error,
                    attempt=attempt + 1,
                    event="kernel_start_retried",
                )

    @defer.inlineCallbacks
    def _launch(self, connection_info: dict[str, Any] | None) -> Any:
        if self.execution_state != "restarting":  # an autorestart shows as such until ready
            self.execution_state = "starting"
        try:
            running = yield self._launcher.launch(
                self.kernel_id, self.spec_name, self.spec, self._env, self._cwd, connection_info
            )
        except InvalidKernelRequest:
            raise  # the request's own fault (a 400), e.g. an env value a provisioner refuses
        except Exception as error:
            raise KernelStartError(f"Kernel {self.spec_name} could not be launched: {error}") from error
        self.running = running
        self._expected_end = False
        running.whenEnded().addCallback(self._process_ended, running)
        if running.connection_info != self.connection_info:
            self.connection_info = dict(running.connection_info)
            key = self.connection_info.get("key", b"")
            self.signer = messages.Signer(key.encode() if isinstance(key, str) else key)
            self._open_kernel_sockets()
        try:
            yield self._wait_ready(running)
        except KernelStartError:
            yield self._stop_process(running, polite=False)
            raise

    def _open_kernel_sockets(self) -> None:
        for socket in self._kernel_sockets.values():
            socket.close()
        info = self.connection_info
        self._kernel_sockets = {
            "iopub": self._sockets.subscriber(channel_url(info, "iopub"), self._iopub_received),
            "shell": self._sockets.dealer(channel_url(info, "shell"), self._own_reply_received),
            "control": self._sockets.dealer(channel_url(info, "control"), self._own_reply_received),
        }
        for client in list(self._clients):
            client.reconnect()

    def _wait_ready(self, running: IRunningKernel) -> defer.Deferred[None]:
        """Fire once kernel_info is answered and iopub flows; fail on death or timeout."""
        self._iopub_seen = False
        self._info_seen = False
        ready: defer.Deferred[None] = defer.Deferred()
        self._ready = ready
        calls: list[IDelayedCall] = []

        def nudge() -> None:
            if not ready.called:
                self._send_own("shell", "kernel_info_request", {})
                calls.append(self._clock.callLater(self._nudge_interval, nudge))

        def timed_out() -> None:
            if not ready.called:
                ready.errback(
                    KernelStartError(
                        f"Kernel {self.spec_name} did not answer kernel_info within {self._start_timeout:g} seconds"
                    )
                )

        def finished(result: Any) -> Any:
            self._ready = None
            for call in calls:
                if call.active():
                    call.cancel()
            return result

        nudge()
        calls.append(self._clock.callLater(self._start_timeout, timed_out))
        return ready.addBoth(finished)

    def _check_ready(self) -> None:
        if self._ready is not None and not self._ready.called and self._iopub_seen and self._info_seen:
            if self.execution_state in ("starting", "restarting"):
                self.execution_state = "idle"
            self._ready.callback(None)

    def _process_ended(self, code: int | None, running: IRunningKernel) -> None:
        if running is not self.running or self._expected_end or self.gone:
            return
        if self._ready is not None and not self._ready.called:
            self._ready.errback(KernelDiedStarting(f"Kernel {self.spec_name} died while starting (exit code {code})"))
            return
        log.warn(
            "kernel {kernel_id} died unexpectedly (exit code {code})",
            kernel_id=self.kernel_id,
            spec_name=self.spec_name,
            code=code,
            event="kernel_died",
        )
        running.cleanup()
        self._autorestart()

    @defer.inlineCallbacks
    def _autorestart(self) -> Any:
        if self._restart_policy.should_restart(self._clock.seconds()):
            self.execution_state = "restarting"
            self._broadcast_status("restarting")
            try:
                yield self._launch(self.connection_info)
            except KernelStartError as error:
                log.warn("kernel {kernel_id} failed to restart: {error}", kernel_id=self.kernel_id, error=error)
                if not self.gone:
                    self._autorestart()
                return
            log.info(
                "kernel {kernel_id} restarted after dying",
                kernel_id=self.kernel_id,
                spec_name=self.spec_name,
                reason="died",
                event="kernel_restarted",
            )
            return
        self._die("too many restarts")

    def _die(self, reason: str) -> None:
        """Declare the kernel dead for good: tell listeners, release everything, let the owner forget it."""
        log.error("kernel {kernel_id} is dead: {reason}", kernel_id=self.kernel_id, reason=reason, event="kernel_dead")
        self.execution_state = "dead"
        self._broadcast_status("dead")
        self._close()
        if self._on_dead is not None:
            self._on_dead(self)

    def interrupt(self) -> None:
        """Interrupt what the kernel runs, by signal or message as its spec says."""
        if self.gone or self.running is None:
            raise KernelGone(self.kernel_id)
        if getattr(self.spec, "interrupt_mode", "signal") == "message":
            self._send_own("control", "interrupt_request", {})
        else:
            self.running.signal(signal.SIGINT)

    @defer.inlineCallbacks
    def restart(self) -> Any:
        """Restart under the same id and ports; connected clients stay attached."""
        if self.gone:
            raise KernelGone(self.kernel_id)
        if self.running is not None:
            yield self._stop_process(self.running, polite=True, restart=True)
        try:
            yield self._launch(self.connection_info or None)
        except KernelStartError:
            # Its process is gone: a kernel left listed would be a lost one.
            if not self.gone:
                self._die("failed to restart")
            raise
        log.info(
            "kernel {kernel_id} restarted",
            kernel_id=self.kernel_id,
            spec_name=self.spec_name,
            reason="request",
            event="kernel_restarted",
        )

    @defer.inlineCallbacks
    def shutdown(self) -> Any:
        """Shut the kernel down and release everything it holds."""
        if self.gone:
            return
        self.gone = True
        if self._ready is not None and not self._ready.called:
            self._ready.errback(KernelStartError(f"Kernel {self.spec_name} was shut down while starting"))
        if self.running is not None:
            yield self._stop_process(self.running, polite=True)
        self.execution_state = "dead"
        self._close()

    @defer.inlineCallbacks
    def _stop_process(self, running: IRunningKernel, polite: bool, restart: bool = False) -> Any:
        """End a kernel process: shutdown_request, then TERM, then KILL; then clean up."""
        self._expected_end = True
        ended = running.whenEnded()
        if polite:
            reply = self._send_own("control", "shutdown_request", {"restart": restart})
            # A provisioned kernel's provisioner may have its own part to play once the kernel agreed to go.
            shutdown_requested = getattr(running, "shutdown_requested", None)
            if shutdown_requested is not None:
                reply.addCallback(lambda _: shutdown_requested(restart))
            if (yield self._within(ended, self._shutdown_wait)):
                running.cleanup()
                return
            running.terminate()
            if (yield self._within(running.whenEnded(), self._kill_wait)):
                running.cleanup()
                return
        running.kill()
        yield running.whenEnded()
        running.cleanup()

    def _within(self, waiter: defer.Deferred[Any], seconds: float) -> defer.Deferred[bool]:
        """True if ``waiter`` fires within ``seconds``, False on timeout."""
        waiter.addTimeout(seconds, self._clock)
        return waiter.addCallbacks(lambda _: True, lambda failure: failure.trap(defer.TimeoutError) and False)

    def _close(self) -> None:
        self.gone = True
        for client in list(self._clients):
            client.close()
        for socket in self._kernel_sockets.values():
            socket.close()
        self._kernel_sockets.clear()
        for waiter in self._own_requests.values():
            if not waiter.called:
                waiter.errback(KernelGone(self.kernel_id))
        self._own_requests.clear()
        listeners, self._gone_listeners = self._gone_listeners, []
        for listener in listeners:
            listener(self)

    # -- messages ------------------------------------------------------------

    def _decode(self, channel: str, frames: list[bytes]) -> messages.RawMessage | None:
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
        message = self._decode("iopub", frames)
        if message is None:
            return
        self._iopub_seen = True
        msg_type = message.msg_type
        parent_type = message.parent_msg_type
        if msg_type == "status":
            state = messages.parse_json_part(message.content).get("execution_state")
            if isinstance(state, str) and self._ready is None:
                self.execution_state = state
            if state == "busy" and parent_type not in UNTRACKED_MESSAGE_TYPES:
                self.last_activity = utcnow()
        elif msg_type not in UNTRACKED_MESSAGE_TYPES or (parent_type and parent_type not in UNTRACKED_MESSAGE_TYPES):
            self.last_activity = utcnow()
        self._check_ready()
        for listener in list(self._iopub_listeners):
            listener(message)

    def _own_reply_received(self, frames: list[bytes]) -> None:
        message = self._decode("shell", frames)
        if message is None:
            return
        parent_id = messages.parse_json_part(message.parent_header).get("msg_id")
        if message.msg_type == "kernel_info_reply" and self._ready is not None:
            self._info_seen = True
            self._check_ready()
        waiter = self._own_requests.pop(parent_id, None) if isinstance(parent_id, str) else None
        if waiter is not None and not waiter.called:
            waiter.callback(message)

    def _send_own(self, channel: str, msg_type: str, content: dict[str, Any]) -> defer.Deferred[messages.RawMessage]:
        """Send a message of the gateway's own and return a Deferred for its reply."""
        message = messages.new_message(msg_type, content, session=self.session_id)
        waiter: defer.Deferred[messages.RawMessage] = defer.Deferred()
        self._own_requests[message.msg_id] = waiter
        # Forget requests nobody waits on, so unanswered nudges do not pile up.
        waiter.addErrback(lambda failure: None)
        if len(self._own_requests) > 64:
            oldest = next(iter(self._own_requests))
            self._own_requests.pop(oldest)
        socket = self._kernel_sockets.get(channel)
        if socket is not None:
            socket.send(messages.to_zmq(message, self.signer))
        return waiter

    def _note_outgoing(self, message: messages.RawMessage) -> None:
        if message.msg_type not in UNTRACKED_MESSAGE_TYPES:
            self.last_activity = utcnow()

    def _broadcast_status(self, state: str) -> None:
        """Tell every listener the state, as Jupyter Server does on restart and death."""
        message = messages.new_message("status", {"execution_state": state}, session=self.session_id)
        for listener in list(self._iopub_listeners):
            listener(message)

