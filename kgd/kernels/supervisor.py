"""Keeping one kernel process alive, and ending it: supervision in one place.

A ``KernelSupervisor`` launches a kernel through an ``IKernelLauncher`` (again
on fresh ports if it dies before answering kernel_info), or ``adopt``s an
``IRunningKernel`` it did not launch; watches it (``whenEnded``); restarts it
when it dies unexpectedly, as a ``RestartPolicy`` allows, and otherwise
declares it dead; interrupts it by signal or by message as its kernelspec
says; and stops it politely before it signals: ``shutdown_request`` over the
connection, then TERM, then KILL, to the whole group.  It talks to the kernel
only through a ``KernelConnection`` and records state in ``KernelActivity``.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Mapping

from jupyter_client.kernelspec import KernelSpec
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kgd.interfaces import IKernelLauncher, IRunningKernel
from kgd.kernels.activity import KernelActivity
from kgd.kernels.connection import HandshakeTimedOut, KernelConnection, KernelGone
from kgd.kernels.kernel_request import InvalidKernelRequest

log = Logger()


class KernelStartError(Exception):
    """A kernel did not start: it died, timed out, or could not be launched."""


class KernelDiedStarting(KernelStartError):
    """The kernel process ended before it answered kernel_info."""


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


def interrupts_by_message(spec: KernelSpec) -> bool:
    """True if the kernelspec asks for ``interrupt_request`` on control rather than SIGINT."""
    return getattr(spec, "interrupt_mode", "signal") == "message"


class KernelSupervisor:
    """Launches or adopts one kernel process, restarts it, interrupts and stops it.

    ``on_gone(dead)`` is called once, when the kernel was shut down
    (``dead=False``) or died for good (``dead=True``).  ``on_restart`` is
    told when a restart begins (``"restarting"``) and when the new process
    answered (``"restarted"``), on request or after a death.  ``on_launched`` is
    told of every process it launches or adopts, before the handshake, so a
    kernel store can record it at once.
    """

    def __init__(
        self,
        kernel_id: str,
        spec_name: str,
        spec: KernelSpec,
        *,
        launcher: IKernelLauncher,
        connection: KernelConnection,
        activity: KernelActivity,
        clock: IReactorTime,
        env: Mapping[str, str],
        cwd: str,
        on_gone: Callable[[bool], None],
        start_timeout: float = 60.0,
        start_attempts: int = 3,
        shutdown_wait: float = 5.0,
        kill_wait: float = 5.0,
        nudge_interval: float = 1.0,
        restart_policy: RestartPolicy | None = None,
        on_launched: Callable[[IRunningKernel], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self.kernel_id = kernel_id
        self.spec_name = spec_name
        self.spec = spec
        self._launcher = launcher
        self._connection = connection
        self._activity = activity
        self._clock = clock
        self._env = dict(env)
        self._cwd = cwd
        self._on_gone = on_gone
        self._start_timeout = start_timeout
        self._start_attempts = start_attempts
        self._shutdown_wait = shutdown_wait
        self._kill_wait = kill_wait
        self._nudge_interval = nudge_interval
        self._restart_policy = restart_policy or RestartPolicy()
        self._on_launched = on_launched
        self._on_restart = on_restart or (lambda phase: None)
        self.running: IRunningKernel | None = None
        #: Relaunches of this kernel, on request or after a death, kept across daemons by the kernel store.
        self.restart_count = 0
        self._expected_end = False
        self.gone = False

    # -- starting ------------------------------------------------------------

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

    def adopt(self, running: IRunningKernel, timeout: float | None = None) -> defer.Deferred[None]:
        """Take over a kernel this supervisor did not launch; fires once it answers kernel_info.

        From then on it is watched, restarted and stopped like a launched
        one.  A kernel that does not answer within ``timeout`` seconds (the
        start timeout by default) is stopped and the Deferred fails with
        ``KernelStartError``.
        """
        self._activity.starting()
        return self._watch(running, timeout)

    @defer.inlineCallbacks
    def follow(self, connection_info: Mapping[str, Any], timeout: float) -> Any:
        """Connect to a kernel another replica supervises: sockets and handshake, no process to watch.

        ``adopt`` turns it into a supervised kernel if this replica takes it over.
        """
        self._activity.starting()
        self._connection.connect(connection_info)
        try:
            yield self._connection.handshake(self._clock, timeout, self._nudge_interval)
        except HandshakeTimedOut:
            raise KernelStartError(f"Kernel {self.spec_name} did not answer kernel_info within {timeout:g} seconds") from None

    def relinquish(self) -> None:
        """Stop watching the process without stopping it or the sockets: another replica supervises it now."""
        self._expected_end = True
        self.running = None

    def detach(self) -> None:
        """Stop supervising without stopping the process: it is left running for the next daemon."""
        self.gone = True
        self._expected_end = True

    @defer.inlineCallbacks
    def _launch(self, connection_info: dict[str, Any] | None) -> Any:
        self._activity.starting()
        try:
            running = yield self._launcher.launch(
                self.kernel_id, self.spec_name, self.spec, self._env, self._cwd, connection_info
            )
        except InvalidKernelRequest:
            raise  # the request's own fault (a 400), e.g. an env value a provisioner refuses
        except Exception as error:
            raise KernelStartError(f"Kernel {self.spec_name} could not be launched: {error}") from error
        if self.gone:
            # Shut down while the launch was under way: this process must not outlive the kernel.
            self.running = running
            yield self._stop_process(running, polite=False)
            raise KernelGone(self.kernel_id)
        yield self._watch(running)

    @defer.inlineCallbacks
    def _watch(self, running: IRunningKernel, timeout: float | None = None) -> Any:
        """Follow ``running``: connect to it, watch for its end, wait for the handshake."""
        timeout = self._start_timeout if timeout is None else timeout
        self.running = running
        self._expected_end = False
        running.whenEnded().addCallback(self._process_ended, running)
        if self._on_launched is not None:
            self._on_launched(running)
        self._connection.connect(running.connection_info)
        try:
            yield self._connection.handshake(self._clock, timeout, self._nudge_interval)
        except HandshakeTimedOut:
            yield self._stop_process(running, polite=False)
            raise KernelStartError(f"Kernel {self.spec_name} did not answer kernel_info within {timeout:g} seconds")
        except KernelStartError:
            yield self._stop_process(running, polite=False)
            raise

    # -- watching ------------------------------------------------------------

    def _process_ended(self, code: int | None, running: IRunningKernel) -> None:
        if running is not self.running or self._expected_end or self.gone:
            return
        if self._connection.handshaking:
            self._connection.abandon_handshake(
                KernelDiedStarting(f"Kernel {self.spec_name} died while starting (exit code {code})")
            )
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
            self._activity.execution_state = "restarting"
            self._connection.broadcast_status("restarting")
            self._on_restart("restarting")
            self.restart_count += 1
            try:
                yield self._launch(self._connection.connection_info)
            except KernelGone:
                return  # shut down meanwhile
            except KernelStartError as error:
                log.warn("kernel {kernel_id} failed to restart: {error}", kernel_id=self.kernel_id, error=error)
                if not self.gone:
                    self._autorestart()
                return
            log.info(
                "kernel {kernel_id} restarted after dying (restart {restart_count})",
                kernel_id=self.kernel_id,
                restart_count=self.restart_count,
                spec_name=self.spec_name,
                reason="died",
                event="kernel_restarted",
            )
            self._on_restart("restarted")
            return
        self._die("too many restarts")

    def _die(self, reason: str) -> None:
        """Declare the kernel dead for good and tell the owner."""
        log.error("kernel {kernel_id} is dead: {reason}", kernel_id=self.kernel_id, reason=reason, event="kernel_dead")
        self._activity.execution_state = "dead"
        self._connection.broadcast_status("dead")
        self.gone = True
        self._on_gone(True)

    # -- commands ------------------------------------------------------------

    def interrupt(self) -> None:
        """Interrupt what the kernel runs, by signal or message as its spec says."""
        if self.gone:
            raise KernelGone(self.kernel_id)
        if interrupts_by_message(self.spec):
            self._connection.request("control", "interrupt_request", {})
        elif self.running is None:
            raise KernelGone(self.kernel_id)
        else:
            self.running.signal(signal.SIGINT)

    @defer.inlineCallbacks
    def restart(self) -> Any:
        """Restart under the same id and ports; connected clients stay attached."""
        if self.gone:
            raise KernelGone(self.kernel_id)
        self._on_restart("restarting")
        if self.running is not None:
            yield self._stop_process(self.running, polite=True, restart=True)
        if self.gone:
            raise KernelGone(self.kernel_id)  # shut down while its old process stopped
        self.restart_count += 1
        try:
            yield self._launch(self._connection.connection_info or None)
        except KernelStartError:
            # Its process is gone: a kernel left listed would be a lost one.
            if not self.gone:
                self._die("failed to restart")
            raise
        log.info(
            "kernel {kernel_id} restarted (restart {restart_count})",
            kernel_id=self.kernel_id,
            restart_count=self.restart_count,
            spec_name=self.spec_name,
            reason="request",
            event="kernel_restarted",
        )
        self._on_restart("restarted")

    @defer.inlineCallbacks
    def shutdown(self) -> Any:
        """Stop the kernel for good and tell the owner."""
        if self.gone:
            return
        self.gone = True
        self._connection.abandon_handshake(KernelStartError(f"Kernel {self.spec_name} was shut down while starting"))
        if self.running is not None:
            yield self._stop_process(self.running, polite=True)
        self._activity.execution_state = "dead"
        self._on_gone(False)

    @defer.inlineCallbacks
    def _stop_process(self, running: IRunningKernel, polite: bool, restart: bool = False) -> Any:
        """End a kernel process: shutdown_request, then TERM, then KILL; then clean up."""
        self._expected_end = True
        ended = running.whenEnded()
        if polite:
            reply = self._connection.request("control", "shutdown_request", {"restart": restart})
            # A provisioned kernel's provisioner may have its own part to play once the kernel agreed to go.
            reply.addCallback(lambda _: running.shutdown_requested(restart))
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
