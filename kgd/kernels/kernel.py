"""One kernel as the rest of kgd holds it: an id, a kernelspec, a model.

A ``Kernel`` puts three parts together and delegates to them:
``KernelSupervisor`` (the process: launch or adopt, watch, autorestart,
interrupt, stop), ``KernelConnection`` (the ZeroMQ sockets: signing, the
kernel_info handshake, iopub fan-out, the gateway's own requests, clients'
sockets) and ``KernelActivity`` (execution state, last activity, connection
count).  Routes, personalities and pools use only this object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping

from jupyter_client.kernelspec import KernelSpec
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from kgd.interfaces import IKernelLauncher, IRunningKernel, IZmqSockets
from kgd.kernels.activity import UNTRACKED_MESSAGE_TYPES, KernelActivity
from kgd.kernels.shielded import shielded
from kgd.kernels.connection import ClientReceiver, IopubListener, KernelClient, KernelConnection, KernelGone
from kgd.kernels.supervisor import (
    KernelDiedStarting,
    KernelStartError,
    KernelSupervisor,
    RestartPolicy,
    interrupts_by_message,
)
from kgd.timestamps import isoformat

#: Asks the replica that supervises a kernel to do what needs its process: "interrupt", "restart" or "shutdown".
AskOwner = Callable[[str], "defer.Deferred[None]"]

__all__ = [
    "UNTRACKED_MESSAGE_TYPES",
    "Kernel",
    "KernelClient",
    "KernelDiedStarting",
    "KernelGone",
    "KernelStartError",
    "RestartPolicy",
]


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
        on_launched: Callable[["Kernel"], None] | None = None,
        on_restart: Callable[["Kernel", str], None] | None = None,
        started: float | None = None,
    ) -> None:
        self.kernel_id = kernel_id
        self.spec_name = spec_name
        self.spec = spec
        self.activity = KernelActivity(clock)
        self.connection = KernelConnection(kernel_id, sockets, self.activity)
        self.supervisor = KernelSupervisor(
            kernel_id,
            spec_name,
            spec,
            launcher=launcher,
            connection=self.connection,
            activity=self.activity,
            clock=clock,
            env=env,
            cwd=cwd,
            on_gone=self._gone,
            start_timeout=start_timeout,
            start_attempts=start_attempts,
            shutdown_wait=shutdown_wait,
            kill_wait=kill_wait,
            nudge_interval=nudge_interval,
            restart_policy=restart_policy,
            on_launched=(lambda running: on_launched(self)) if on_launched is not None else None,
            on_restart=(lambda phase: on_restart(self, phase)) if on_restart is not None else None,
        )
        self.env = dict(env)
        self.cwd = cwd
        #: When the kernel was first started (seconds since the epoch), kept across restarts and daemons.
        self.started = clock.seconds() if started is None else started
        self._on_dead = on_dead
        self._gone_listeners: list[Callable[["Kernel"], None]] = []
        self._ask_owner: AskOwner | None = None
        self._follow_timeout = start_timeout

    # -- state ---------------------------------------------------------------

    @property
    def execution_state(self) -> str:
        return self.activity.execution_state

    @property
    def last_activity(self) -> datetime:
        return self.activity.last_activity

    @property
    def connections(self) -> int:
        return self.activity.connections

    @property
    def gone(self) -> bool:
        """True once the kernel was shut down or died for good."""
        return self.supervisor.gone

    @property
    def mirrored(self) -> bool:
        """True while another replica supervises this kernel: this one relays its sockets and asks the owner for the rest."""
        return self._ask_owner is not None

    @property
    def running(self) -> IRunningKernel | None:
        return self.supervisor.running

    @property
    def session_id(self) -> str:
        return self.connection.session_id

    @property
    def connection_info(self) -> dict[str, Any]:
        return self.connection.connection_info

    @property
    def bad_signatures(self) -> int:
        return self.connection.bad_signatures

    def model(self) -> dict[str, Any]:
        """The REST model of this kernel, as Jupyter Server shapes it."""
        return {
            "id": self.kernel_id,
            "name": self.spec_name,
            "last_activity": isoformat(self.last_activity),
            "execution_state": self.execution_state,
            "connections": self.connections,
        }

    # -- listeners and clients -----------------------------------------------

    def add_iopub_listener(self, listener: IopubListener) -> None:
        """Receive every iopub message of this kernel, gateway status messages included."""
        self.connection.add_iopub_listener(listener)

    def remove_iopub_listener(self, listener: IopubListener) -> None:
        """Stop receiving iopub messages."""
        self.connection.remove_iopub_listener(listener)

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
        return self.connection.client(receive)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> defer.Deferred[None]:
        """Launch the kernel and wait until it answers kernel_info."""
        return self.supervisor.start()

    def interrupt(self) -> defer.Deferred[None]:
        """Interrupt what the kernel runs, by signal or message as its spec says.

        A mirrored kernel sends an ``interrupt_request`` itself, or asks its
        owner for the signal.  ``KernelGone`` is raised at once if the kernel is gone.
        """
        if self._ask_owner is not None and not interrupts_by_message(self.spec):
            return self._ask_owner("interrupt")
        self.supervisor.interrupt()
        return defer.succeed(None)

    def restart(self) -> defer.Deferred[None]:
        """Restart under the same id and ports; connected clients stay attached.

        Cancelling the returned Deferred does not stop the restart (``shielded``).
        """
        if self._ask_owner is not None:
            # Answered once this replica's own sockets reach the new process too, as the owner's do.
            return shielded(self._ask_owner("restart").addCallback(lambda _: self.reconnected()))
        return shielded(self.supervisor.restart())

    def reconnected(self) -> defer.Deferred[None]:
        """A mirror's kernel was restarted by its owner: handshake again, so its iopub is known to flow."""
        if self._ask_owner is None or self.gone:
            return defer.succeed(None)
        return self.supervisor.follow(self.connection_info, self._follow_timeout)

    def shutdown(self) -> defer.Deferred[None]:
        """Shut the kernel down and release everything it holds (to the end, even if the caller cancels)."""
        return shielded(self.supervisor.shutdown())

    def adopt(self, running: IRunningKernel, timeout: float) -> defer.Deferred[None]:
        """Supervise ``running``, a process an earlier daemon or another replica left; fires once it answers kernel_info.

        A mirror becomes the supervised kernel in place: its clients stay attached."""
        self._ask_owner = None
        return self.supervisor.adopt(running, timeout)

    def follow(self, connection_info: Mapping[str, Any], ask_owner: AskOwner, timeout: float) -> defer.Deferred[None]:
        """Mirror a kernel another replica supervises: connect and handshake; fires once it answers kernel_info."""
        self._ask_owner = ask_owner
        self._follow_timeout = timeout
        return self.supervisor.follow(connection_info, timeout)

    def relinquish(self, ask_owner: AskOwner) -> None:
        """Stop supervising (another replica may own it now) and go on relaying as a mirror: clients stay attached."""
        self.supervisor.relinquish()
        self._ask_owner = ask_owner

    def detach(self, dead: bool = False) -> None:
        """Let go of the kernel, leaving its process (if any) running, and release the sockets.

        ``dead`` says the kernel ended elsewhere for good: clients see it die.
        """
        if dead and not self.gone:
            self.activity.execution_state = "dead"
            self.connection.broadcast_status("dead")
        self.supervisor.detach()
        self._gone(dead=False)

    def _gone(self, dead: bool) -> None:
        """Release the sockets, tell listeners, and let the owner forget a dead kernel."""
        self.connection.close()
        listeners, self._gone_listeners = self._gone_listeners, []
        for listener in listeners:
            listener(self)
        if dead and self._on_dead is not None:
            self._on_dead(self)
