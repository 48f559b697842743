"""Kernels started by a jupyter_client kernel provisioner (remote kernels).

A kernelspec may name a provisioner in ``metadata.kernel_provisioner``:
gateway-provisioners' Kubernetes, Docker, YARN and SSH provisioners start
kernels on other machines that way.  ``ProvisionedLauncher`` creates the
named provisioner through jupyter_client's ``KernelProvisionerFactory``
(which loads the entry point only now, so a provisioner that cannot even be
imported harms nothing but its own kernels) and drives its asyncio API from
Twisted: ``pre_launch``, ``launch_kernel`` and ``post_launch`` on start,
``poll`` on a ``LoopingCall`` to notice the end, ``send_signal``,
``terminate``, ``kill`` and ``cleanup`` as ``IRunningKernel`` asks, and
``shutdown_requested`` once the kernel has answered a shutdown request.
A launch that fails is undone (kill, cleanup); ``stop()`` lets launches
under way finish and undoes them, so stopping the gateway mid-launch
leaves no kernel on a cluster.  ``KERNEL_*`` values are checked first
(``provisioner_env``): provisioners paste some into shell and YAML.

Provisioner coroutines await asyncio futures, so they run as asyncio tasks
on the loop under Twisted's asyncio reactor and come back as Deferreds
(``Deferred.fromFuture(asyncio.ensure_future(coro))``); ``ensureDeferred``
would fail at their first awaited future.

jupyter_client 8 hands each provisioner a ``parent``, normally its
``KernelManager``.  ``ProvisionerParent`` is the smallest real object that
serves what provisioners read there: the connection-file traits and
methods (ip, transport, ports, session key, ``write_connection_file``,
``get_connection_info``), ``cache_ports``, ``format_kernel_cmd`` and the
transport-encryption policy (always disabled: kgd's ZeroMQ sockets do not
speak CurveZMQ).  Connection info and provisioner info stay inside kgd:
they are never part of an API response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from typing import Any, Awaitable, Callable, Mapping, MutableMapping

from jupyter_client.connect import ConnectionFileMixin
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.provisioning import KernelProvisionerFactory, LocalProvisioner
from jupyter_client.session import Session
from traitlets import Any as AnyTrait
from traitlets import Bool, Unicode
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from kgd.interfaces import IKernelLauncher, IRunningKernel
from kgd.kernels.launcher import connection_file_path, kernel_command
from kgd.kernels.process_end import ProcessEnd
from kgd.kernels.provisioner_env import check_provisioner_env
from kgd.kernels.records import CannotAdopt, KernelRecord, ProvisionerState
from kgd.kernels.specs import is_asyncio_reactor, provisioner_name

log = Logger()

Run = Callable[[Awaitable[Any]], "defer.Deferred[Any]"]


class ProvisionerError(Exception):
    """The provisioner a kernelspec names cannot be used (not installed, not importable, wrong reactor) or failed."""


def run_on_asyncio(coroutine: Awaitable[Any]) -> defer.Deferred[Any]:
    """Run a provisioner coroutine as an asyncio task on the reactor's loop; a Deferred of its result."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(coroutine))


class _TwistedLogHandler(logging.Handler):
    """Sends the provisioners' stdlib log records to kgd's Twisted log."""

    _levels = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}

    def emit(self, record: logging.LogRecord) -> None:
        level = self._levels.get(record.levelno, "error" if record.levelno < logging.CRITICAL else "critical")
        getattr(log, level)("provisioner: {message}", message=self.format(record), event="provisioner_log")


def provisioner_logger() -> logging.Logger:
    """The stdlib logger provisioners write to, forwarded to the Twisted log (INFO and up)."""
    logger = logging.getLogger("kgd.provisioners")
    if not any(isinstance(h, _TwistedLogHandler) for h in logger.handlers):
        logger.addHandler(_TwistedLogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def nonblocking_provisioner_sockets(environ: MutableMapping[str, str]) -> None:
    """Make gateway-provisioners' sockets non-blocking unless the operator chose otherwise.

    Its response socket (where remote launchers report) and listener
    requests default to a 10 ms blocking timeout inside asyncio calls, so
    once the first remote kernel starts, every turn of the event loop
    blocks 10 ms: measured here, GET /api went from 0.5 ms to 22 ms.  With
    ``GP_SOCKET_TIMEOUT=0`` they are plain non-blocking asyncio sockets.
    It must be set before gateway_provisioners is imported (it reads it then).
    """
    environ.setdefault("GP_SOCKET_TIMEOUT", "0")


class ProvisionerParent(ConnectionFileMixin):
    """What a provisioner may read on its ``parent``: a KernelManager reduced to one launch.

    Local-style provisioners write the connection file through it (into
    kgd's private runtime directory, with a fresh key); remote ones only
    read the transport-encryption policy and may clear the curve keys.
    """

    kernel_id = Unicode()
    kernel_spec = AnyTrait()
    cache_ports = Bool(False)
    transport_encryption = Unicode("disabled")

    def __init__(self, kernel_id: str, spec: KernelSpec, connection_file: str, **kwargs: Any) -> None:
        super().__init__(kernel_id=kernel_id, kernel_spec=spec, connection_file=connection_file, **kwargs)
        self.session = Session(key=secrets.token_hex(32).encode("ascii"), signature_scheme="hmac-sha256")

    def _transport_encryption_policy(self, requested: Any) -> str:
        """Always 'disabled': the gateway's own ZeroMQ sockets are plain."""
        return "disabled"

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """The kernelspec's argv with its placeholders filled, as KernelManager does."""
        argv = list(self.kernel_spec.argv) + list(extra_arguments or [])
        return kernel_command(argv, self.connection_file, self.kernel_spec.resource_dir)


@implementer(IRunningKernel)
class ProvisionedKernel:
    """A kernel a provisioner launched (or reloaded); it has ended once ``poll()`` returns an exit code."""

    def __init__(
        self,
        kernel_id: str,
        provisioner: Any,
        parent: ProvisionerParent,
        connection_info: dict[str, Any],
        *,
        clock: IReactorTime,
        run: Run,
        poll_interval: float,
        state: ProvisionerState | None = None,
    ) -> None:
        self.kernel_id = kernel_id
        self.provisioner = provisioner
        self._parent = parent
        self.connection_info = connection_info
        #: What a later daemon needs to take this kernel over; None if it cannot (see ``persistable_state``).
        self.provisioner_state = state
        self.pid: int | None = provisioner.pid if isinstance(provisioner, LocalProvisioner) else None
        self._run = run
        self._ending = ProcessEnd()
        self._poller = task.LoopingCall(self._poll)
        self._poller.clock = clock
        self._poller.start(poll_interval, now=False).addErrback(self._poller_failed)

    def _poll(self) -> defer.Deferred[None]:
        return self._run(self.provisioner.poll()).addCallbacks(self._polled, self._poll_failed)

    def _polled(self, code: int | None) -> None:
        if code is not None:
            # Popen reports death by signal as a negative code; IRunningKernel says None.
            self._end(code if code >= 0 else None)

    def _poll_failed(self, failure: Any) -> None:
        log.failure("kernel {kernel_id}: provisioner poll failed", failure, kernel_id=self.kernel_id)

    def _poller_failed(self, failure: Any) -> None:
        log.failure("kernel {kernel_id}: provisioner polling stopped", failure, kernel_id=self.kernel_id)

    def _end(self, code: int | None) -> None:
        if self._ending.ended:
            return
        if self._poller.running:
            self._poller.stop()
        self._ending.end(code)

    def whenEnded(self) -> defer.Deferred[int | None]:
        return self._ending.whenEnded()

    def _call(self, what: str, coroutine: Awaitable[Any]) -> defer.Deferred[Any]:
        def failed(failure: Any) -> None:
            log.failure("kernel {kernel_id}: provisioner {what} failed", failure, kernel_id=self.kernel_id, what=what)

        return self._run(coroutine).addErrback(failed)

    def signal(self, signum: int) -> defer.Deferred[Any] | None:
        if self._ending.ended:
            return None
        return self._call("send_signal", self.provisioner.send_signal(signum))

    def shutdown_requested(self, restart: bool) -> defer.Deferred[Any] | None:
        """The kernel answered shutdown_request: let the provisioner wind down its side (a remote listener)."""
        if self._ending.ended:
            return None
        return self._call("shutdown_requested", self.provisioner.shutdown_requested(restart=restart))

    def terminate(self) -> defer.Deferred[Any] | None:
        if self._ending.ended:
            return None
        return self._call("terminate", self.provisioner.terminate(restart=False))

    def kill(self) -> defer.Deferred[Any] | None:
        if self._ending.ended:
            return None
        return self._call("kill", self.provisioner.kill(restart=False))

    def cleanup(self) -> defer.Deferred[Any]:
        """Drop the connection file now (a restart writes the same path next), then let the provisioner release what it holds."""
        if self._poller.running:
            self._poller.stop()
        self._parent.cleanup_connection_file()
        return self._call("cleanup", self.provisioner.cleanup(restart=False))


@implementer(IKernelLauncher)
class ProvisionedLauncher:
    """Launches kernels through the provisioner their kernelspec names."""

    def __init__(
        self,
        reactor: Any,
        runtime_dir: str,
        *,
        factory: Callable[[], Any] = KernelProvisionerFactory.instance,
        run: Run = run_on_asyncio,
        poll_interval: float = 1.0,
        require_asyncio: bool = True,
        environ: MutableMapping[str, str] = os.environ,
    ) -> None:
        self._reactor = reactor
        self._runtime_dir = runtime_dir
        self._factory = factory
        self._run = run
        self._poll_interval = poll_interval
        self._require_asyncio = require_asyncio
        self._in_flight: set[defer.Deferred[IRunningKernel]] = set()
        self._stopping = False
        nonblocking_provisioner_sockets(environ)

    def stop(self) -> defer.Deferred[None]:
        """Wait for the launches under way; each ends killed and cleaned up (the gateway is stopping).

        A remote launch takes seconds (minutes for a pod); a kernel shut
        down meanwhile would otherwise be started with nobody left to end it.
        """
        self._stopping = True
        waiting = []
        for launch in list(self._in_flight):
            done: defer.Deferred[None] = defer.Deferred()
            launch.addBoth(lambda result, done=done: (done.callback(None), result)[1])
            waiting.append(done)
        return defer.gatherResults(waiting).addCallback(lambda _: None)

    def launch(
        self,
        kernel_id: str,
        spec_name: str,
        spec: KernelSpec,
        env: Mapping[str, str],
        cwd: str,
        connection_info: dict[str, Any] | None = None,
    ) -> defer.Deferred[IRunningKernel]:
        name = provisioner_name(spec) or "?"
        if self._stopping:
            return defer.fail(ProvisionerError("the gateway is stopping"))
        if self._require_asyncio and not is_asyncio_reactor(self._reactor):
            return defer.fail(
                ProvisionerError(
                    f"kernelspec {spec_name} needs the provisioner {name}, which runs only on the asyncio "
                    "reactor: start the gateway with 'twistd -r asyncio kgd'"
                )
            )
        try:
            check_provisioner_env(env)
        except ValueError as error:
            return defer.fail(error)
        parent = ProvisionerParent(
            kernel_id,
            spec,
            connection_file_path(self._runtime_dir, kernel_id),
            log=provisioner_logger(),
        )
        if connection_info is not None:
            parent.load_connection_info(connection_info)
        try:
            provisioner = self._factory().create_provisioner_instance(kernel_id, spec, parent)
        except Exception as error:
            log.error(
                "kernel {kernel_id} ({spec_name}): provisioner {name} is not available: {error}",
                kernel_id=kernel_id,
                spec_name=spec_name,
                name=name,
                error=f"{type(error).__name__}: {error}",
                event="provisioner_unavailable",
            )
            return defer.fail(ProvisionerError(f"provisioner {name} is not available ({type(error).__name__}: {error})"))
        launch = self._run(self._start(provisioner, name, dict(env), cwd))
        launch.addCallback(self._unless_stopping)
        launch.addErrback(self._failed, kernel_id, spec_name, name, provisioner, parent)
        launch.addCallback(self._started, kernel_id, spec_name, name, provisioner, parent)
        self._in_flight.add(launch)
        return launch.addBoth(lambda result: (self._in_flight.discard(launch), result)[1])

    def _unless_stopping(self, launched: Any) -> Any:
        if self._stopping:
            raise ProvisionerError("the gateway is stopping")
        return launched

    async def _start(
        self, provisioner: Any, name: str, env: dict[str, str], cwd: str
    ) -> tuple[dict[str, Any], ProvisionerState | None]:
        """The launch sequence of jupyter_client's KernelManager, minus the manager; then what persists of it."""
        kwargs = await provisioner.pre_launch(env=env, cwd=cwd)
        command = kwargs.pop("cmd")
        info = await provisioner.launch_kernel(command, **kwargs)
        await provisioner.post_launch(**kwargs)
        return dict(info), await persistable_state(provisioner, name)

    def _started(
        self,
        launched: tuple[dict[str, Any], ProvisionerState | None],
        kernel_id: str,
        spec_name: str,
        name: str,
        provisioner: Any,
        parent: ProvisionerParent,
    ) -> IRunningKernel:
        info, state = launched
        running = self._watched(kernel_id, provisioner, parent, info, state)
        if running.pid is not None:
            where = f"as pid {running.pid}"
        else:
            where = f"on {getattr(provisioner, 'assigned_host', '') or info.get('ip', '?')}"
        log.info(
            "kernel {kernel_id} ({spec_name}) launched {where} by provisioner {name}",
            kernel_id=kernel_id,
            spec_name=spec_name,
            where=where,
            name=name,
            event="kernel_launched",
        )
        return running

    def adopt(self, record: KernelRecord, spec: KernelSpec) -> defer.Deferred[IRunningKernel]:
        """Reload the provisioner of a recorded kernel; ``CannotAdopt`` if it cannot or says the kernel ended.

        The provisioner is made as for a launch, given back its
        ``get_provisioner_info()`` through ``load_provisioner_info()``, and
        polled once: only a kernel it still reports running is taken over.
        """
        state = record.provisioner
        name = provisioner_name(spec)
        if state is None:
            return defer.fail(CannotAdopt("it was not started by a provisioner"))
        if name != state.name:
            return defer.fail(CannotAdopt(f"its kernelspec now names provisioner {name!r}, not {state.name!r}"))
        if self._require_asyncio and not is_asyncio_reactor(self._reactor):
            return defer.fail(CannotAdopt(f"provisioner {name} runs only on the asyncio reactor"))
        parent = ProvisionerParent(
            record.kernel_id,
            spec,
            connection_file_path(self._runtime_dir, record.kernel_id),
            log=provisioner_logger(),
        )
        connection_info = dict(record.connection_info)
        parent.load_connection_info(connection_info)
        try:
            provisioner = self._factory().create_provisioner_instance(record.kernel_id, spec, parent)
        except Exception as error:
            return defer.fail(CannotAdopt(f"provisioner {name} is not available ({type(error).__name__}: {error})"))
        reloaded = self._run(self._reload(provisioner, state, connection_info))

        def adopted(code: int | None) -> IRunningKernel:
            if code is not None:
                raise CannotAdopt(f"provisioner {name} reports it ended")
            return self._watched(record.kernel_id, provisioner, parent, connection_info, state)

        return reloaded.addCallback(adopted)

    def _watched(
        self,
        kernel_id: str,
        provisioner: Any,
        parent: ProvisionerParent,
        info: dict[str, Any],
        state: ProvisionerState | None,
    ) -> ProvisionedKernel:
        """A launched or reloaded kernel, polled through its provisioner on this launcher's clock."""
        return ProvisionedKernel(
            kernel_id, provisioner, parent, info, clock=self._reactor, run=self._run, poll_interval=self._poll_interval, state=state
        )

    async def _reload(self, provisioner: Any, state: ProvisionerState, connection_info: dict[str, Any]) -> int | None:
        await provisioner.load_provisioner_info({**state.info, "connection_info": connection_info})
        return await provisioner.poll()

    @defer.inlineCallbacks
    def _failed(
        self, failure: Any, kernel_id: str, spec_name: str, name: str, provisioner: Any, parent: ProvisionerParent
    ) -> Any:
        """Undo a failed launch (kill whatever started, release the provisioner's resources), then fail."""
        log.error(
            "kernel {kernel_id} ({spec_name}): provisioner {name} failed to launch it: {error}",
            kernel_id=kernel_id,
            spec_name=spec_name,
            name=name,
            error=f"{failure.type.__name__}: {failure.value}",
            event="provisioner_launch_failed",
        )
        if provisioner.has_process:
            yield self._undo(kernel_id, "kill", provisioner.kill(restart=False))
        yield self._undo(kernel_id, "cleanup", provisioner.cleanup(restart=False))
        parent.cleanup_connection_file()
        raise ProvisionerError(f"provisioner {name} failed to launch the kernel ({failure.type.__name__}: {failure.value})")

    def _undo(self, kernel_id: str, step: str, coroutine: Awaitable[Any]) -> defer.Deferred[None]:
        """Run one undo step of a failed launch; its own failure is logged, not raised."""

        def failed(failure: Any) -> None:
            log.warn("kernel {kernel_id}: provisioner {step} after a failed launch: {error}", kernel_id=kernel_id, step=step, error=failure.value)

        return self._run(coroutine).addErrback(failed)


async def persistable_state(provisioner: Any, name: str) -> ProvisionerState | None:
    """What a later daemon needs to reload ``provisioner``, or None if it could not.

    jupyter_client's ``LocalProvisioner`` keeps its kernel as a child
    ``Popen`` that ``load_provisioner_info()`` cannot give back (its ``poll()``
    then says the kernel ended), and it hands the kernel ``JPY_PARENT_PID``,
    so such a kernel ends with the daemon anyway.  Remote provisioners
    (gateway-provisioners') reach their kernel by host and listener port,
    which is what their info holds.  Info that is not JSON cannot be stored.
    """
    if isinstance(provisioner, LocalProvisioner):
        return None
    info = dict(await provisioner.get_provisioner_info())
    info.pop("connection_info", None)  # the record keeps it once, with its key
    try:
        info = json.loads(json.dumps(info))
    except (TypeError, ValueError) as error:
        log.warn(
            "kernel {kernel_id}: provisioner {name}'s info cannot be stored ({error}); it will not outlive the daemon",
            kernel_id=getattr(provisioner, "kernel_id", "?"),
            name=name,
            error=error,
        )
        return None
    return ProvisionerState(name=name, info=info)
