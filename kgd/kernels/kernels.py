"""The set of running kernels, as a Twisted Service.

``Kernels`` starts kernels (choosing the kernelspec and environment by the
rules in ``kernel_request``), enforces ``--max-kernels`` counting kernels
that are still starting, finds kernels by id, forgets kernels that die for
good, and on ``stopService`` shuts every kernel down, so that stopping the
daemon never leaves a kernel process behind.

With a kernel store (``--kernel-store``) every kernel is recorded as soon as
its process exists (again after each restart), and forgotten with it.  On
start, every record is adopted before the daemon says it is ready: the
process checked, its sockets reopened, ``kernel_info`` answered, and the
kernel listed again under its id and last activity; one that cannot be
adopted is ``kernel_lost``.  With ``detach_on_stop``, stopping leaves the
users' kernels running for the next daemon, their records current; kernels
of the pools (prespawned, notebook-http) are shut down, and the pools refill
on the next start.

Among replicas sharing a store (``replicate_with``), the set holds two kinds
of kernel: the ones this replica supervises (started here or taken over) and
mirrors of the ones another replica supervises (``Kernel.follow``), made on
demand by the ``Peers``.  A mirror is never recorded, culled or shut down
here: its owner is asked, and its owner's end of it is followed.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Iterable, Mapping, Protocol

from jupyter_client.kernelspec import KernelSpec
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kgd.interfaces import IKernelLauncher, IKernelStore, IRunningKernel, IZmqSockets
from kgd.kernels.in_flight import InFlight
from kgd.kernels.kernel import AskOwner, Kernel, KernelStartError
from kgd.kernels.records import KernelRecord, OnAnotherHost, StoreUnavailable
from kgd.kernels.shielded import shielded
from kgd.kernels.kernel_request import InvalidKernelRequest, choose_kernel_name, kernel_cwd, kernel_env
from kgd.kernels.specs import KernelSpecs, UnknownKernelSpec

log = Logger()


class KernelLimitReached(Exception):
    """Starting one more kernel would exceed ``--max-kernels``."""


class UnknownKernel(LookupError):
    """No running kernel has this id."""

    def __init__(self, kernel_id: str) -> None:
        super().__init__(f"Kernel does not exist: {kernel_id}")
        self.kernel_id = kernel_id


KernelHook = Callable[[Kernel], Any]
#: Turns a record (and its kernelspec) into its running kernel, or fails with the reason it cannot (``adoption.KernelAdopter``).
AdoptProcess = Callable[[KernelRecord, KernelSpec], "defer.Deferred[IRunningKernel]"]
#: Turns a kernel into its record, or None if it cannot be adopted later (``adoption.record_of``).
RecordOf = Callable[[Kernel, str], "KernelRecord | None"]

class Peers(Protocol):
    """The other replicas, as ``Kernels`` needs them (``kgd.kernels.replication.Replication``)."""

    def claim(self, kernel_id: str) -> "defer.Deferred[None]":
        """Hold a kernel slot and the lease of a kernel about to start here; ``KernelLimitReached`` if all slots are taken."""

    def restart_phase(self, kernel_id: str, phase: str) -> None:
        """A kernel supervised here is ``"restarting"`` or ``"restarted"``: its mirrors follow."""

    def ended(self, kernel_id: str, dead: bool) -> "defer.Deferred[None]":
        """A kernel supervised here ended (or never started): tell the others, free its lease and slot."""

    def handed_off(self, kernel_id: str) -> "defer.Deferred[None]":
        """A kernel supervised here was left running (the daemon stops): free its lease for another replica."""

    def ask(self, kernel_id: str, action: str) -> "defer.Deferred[None]":
        """Have the owner of a mirrored kernel interrupt, restart or shut it down."""

    def asker(self, kernel_id: str) -> AskOwner:
        """``ask`` for one kernel, as a mirror holds it."""

    def find(self, kernel_id: str) -> "defer.Deferred[Kernel]":
        """A mirror of a kernel another replica supervises, from its record; ``UnknownKernel`` if none."""

    def refresh(self) -> "defer.Deferred[None]":
        """Bring this replica's set in step with the store: mirror, forget and take over."""


#: The role of a kernel someone asked for.  Pools that own kernels start them
#: under a role of their own ("prespawn", "notebook-http"), and the culler
#: spares every kernel whose role is not this one.
USER = "user"


class Kernels(Service):
    """Every kernel this daemon runs, by id."""

    name = "kernels"

    def __init__(
        self,
        specs: KernelSpecs,
        launcher: IKernelLauncher,
        sockets: IZmqSockets,
        clock: IReactorTime,
        *,
        force_name: str = "",
        max_kernels: int | None = None,
        env_whitelist: Iterable[str] = (),
        env_process_whitelist: Iterable[str] = (),
        daemon_env: Mapping[str, str] | None = None,
        root_dir: str | None = None,
        start_timeout: float = 60.0,
        shutdown_wait: float = 5.0,
        store: IKernelStore | None = None,
        record_of: RecordOf | None = None,
        adopt_process: AdoptProcess | None = None,
        adopt_timeout: float = 10.0,
        detach_on_stop: bool = False,
        activity_interval: float = 30.0,
    ) -> None:
        self.specs = specs
        self._launcher = launcher
        self._sockets = sockets
        self._clock = clock
        self.force_name = force_name
        self.max_kernels = max_kernels
        self._env_whitelist = tuple(env_whitelist)
        self._env_process_whitelist = tuple(env_process_whitelist)
        self._daemon_env = dict(os.environ if daemon_env is None else daemon_env)
        self._root_dir = root_dir or os.getcwd()
        self._start_timeout = start_timeout
        self._shutdown_wait = shutdown_wait
        self._kernels: dict[str, Kernel] = {}
        self._starting: dict[str, Kernel] = {}
        self._stopping: dict[str, defer.Deferred[None]] = {}
        self._roles: dict[str, str] = {}
        self.prepare_hooks: list[KernelHook] = []
        self._store = store
        self._record_of = record_of
        self._adopt_process = adopt_process
        self._adopt_timeout = adopt_timeout
        self._detach_on_stop = detach_on_stop
        self._adoption_over = False
        self._adoption_waiters: list[defer.Deferred[None]] = []
        # Without a stop (SIGKILL, OOM) the store has what was last written:
        # last activity is brought up to date every ``activity_interval`` seconds.
        self._activity_interval = activity_interval
        self._recorded_activity: dict[str, float] = {}
        self._activity_writer = task.LoopingCall(self._record_activity)
        self._activity_writer.clock = clock
        self._peers: Peers | None = None
        self._mirroring: InFlight[Kernel] = InFlight()

    def replicate_with(self, peers: Peers) -> None:
        """Share the store with other replicas: claim kernels before starting them, mirror theirs, take dead owners' over."""
        self._peers = peers

    # -- queries -------------------------------------------------------------

    def get(self, kernel_id: str) -> Kernel:
        """The running kernel with this id; ``UnknownKernel`` if there is none."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None or kernel.gone:
            raise UnknownKernel(kernel_id)
        return kernel

    def list(self) -> list[Kernel]:
        """Running kernels, oldest first."""
        return [k for k in self._kernels.values() if not k.gone]

    def find(self, kernel_id: str) -> defer.Deferred[Kernel]:
        """The kernel with this id, here or (mirrored) from another replica; fails with ``UnknownKernel``."""
        try:
            return defer.succeed(self.get(kernel_id))
        except UnknownKernel as error:
            if self._peers is None or kernel_id in self._stopping:
                return defer.fail(error)
            return self._peers.find(kernel_id)

    def refresh(self) -> defer.Deferred[None]:
        """Fire once ``list()`` shows every kernel of the store (at once without replicas)."""
        return defer.succeed(None) if self._peers is None else self._peers.refresh()

    def known(self, kernel_id: str) -> bool:
        """True if this replica runs, mirrors, starts or stops a kernel of this id."""
        return any(kernel_id in kernels for kernels in (self._kernels, self._starting, self._stopping)) or kernel_id in self._mirroring

    def role(self, kernel_or_id: Kernel | str) -> str:
        """Who owns the kernel: ``USER`` or the role a pool started it under."""
        kernel_id = _kernel_id(kernel_or_id)
        try:
            return self._roles[kernel_id]
        except KeyError:
            raise UnknownKernel(kernel_id) from None

    def set_role(self, kernel_or_id: Kernel | str, role: str) -> None:
        """Give a kernel to a new owner, e.g. a pooled kernel handed to a user; a forgotten kernel keeps none."""
        kernel_id = _kernel_id(kernel_or_id)
        if kernel_id in self._roles:
            self._roles[kernel_id] = role
            kernel = self._kernels.get(kernel_id) or self._starting.get(kernel_id)
            if kernel is not None:
                self._record(kernel)

    def alive_count(self) -> int:
        """Kernels that count toward the limit: running and still starting."""
        return len(self._kernels) + len(self._starting)

    # -- lifecycle -----------------------------------------------------------

    def start_kernel(
        self,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        path: Any = None,
        kernel_id: str | None = None,
        *,
        role: str = USER,
        _looked_up: bool = False,
    ) -> defer.Deferred[Kernel]:
        """Start a kernel owned by ``role``; fires with it once it answers kernel_info.

        Fails with ``UnknownKernelSpec``, ``KernelLimitReached``,
        ``InvalidKernelRequest`` or ``KernelStartError``.
        """
        if kernel_id is not None:
            existing = self._kernels.get(kernel_id)
            if existing is not None and not existing.gone:
                return defer.succeed(existing)
            if self._peers is not None and kernel_id not in self._stopping and not _looked_up:
                # The id may name a kernel another replica runs: that one is the answer, as it would be there.
                return self._peers.find(kernel_id).addErrback(
                    lambda failure: failure.trap(UnknownKernel)
                    and self.start_kernel(name, env, path, kernel_id, role=role, _looked_up=True)
                )
            if kernel_id in self._stopping:
                # The old kernel of that id still holds its connection file: start once it is gone.
                return shielded(self._stopping[kernel_id]).addBoth(
                    lambda _: self.start_kernel(name, env, path, kernel_id, role=role)
                )
            try:
                kernel_id = str(uuid.UUID(kernel_id))
            except ValueError:
                return defer.fail(InvalidKernelRequest(f"kernel_id {kernel_id!r} is not a UUID"))
            if kernel_id in self._starting:
                return defer.fail(InvalidKernelRequest(f"kernel {kernel_id} is already starting"))
        if self._peers is None and self.max_kernels is not None and self.alive_count() >= self.max_kernels:
            return defer.fail(KernelLimitReached(f"Resource Limit: at most {self.max_kernels} kernels"))
        spec_name = choose_kernel_name(name, self.specs.default_name, self.force_name)
        try:
            spec = self.specs.get(spec_name)
        except LookupError as error:
            return defer.fail(error)
        kernel = self._make_kernel(
            kernel_id or str(uuid.uuid4()),
            spec_name,
            spec,
            kernel_env(self._daemon_env, env, self._env_whitelist, self._env_process_whitelist),
            kernel_cwd(self._root_dir, path),
        )
        self._roles[kernel.kernel_id] = role
        # A client that disconnects does not stop the start: the kernel comes up and is listed.
        return shielded(self._start(kernel))

    def _make_kernel(
        self, kernel_id: str, spec_name: str, spec: Any, env: Mapping[str, str], cwd: str, started: float | None = None
    ) -> Kernel:
        return Kernel(
            kernel_id,
            spec_name,
            spec,
            launcher=self._launcher,
            sockets=self._sockets,
            clock=self._clock,
            env=env,
            cwd=cwd,
            start_timeout=self._start_timeout,
            shutdown_wait=self._shutdown_wait,
            on_dead=self._forget,
            on_launched=self._record if self._store is not None else None,
            on_restart=self._restart_phase,
            started=started,
        )

    @defer.inlineCallbacks
    def _start(self, kernel: Kernel) -> Any:
        self._starting[kernel.kernel_id] = kernel
        began = self._clock.seconds()
        try:
            if self._peers is not None:
                yield self._peers.claim(kernel.kernel_id)  # before the record exists: no replica takes it over
            yield kernel.start()
            for hook in self.prepare_hooks:
                yield hook(kernel)
        except Exception as error:
            log.warn(
                "kernel {kernel_id} ({spec_name}) failed to start: {error}",
                kernel_id=kernel.kernel_id,
                spec_name=kernel.spec_name,
                error=error,
                event="kernel_start_failed",
            )
            self._roles.pop(kernel.kernel_id, None)
            yield kernel.shutdown()
            yield self._unrecord(kernel.kernel_id)
            if isinstance(error, (KernelStartError, InvalidKernelRequest, KernelLimitReached, StoreUnavailable)):
                raise
            raise KernelStartError(str(error)) from error
        finally:
            self._starting.pop(kernel.kernel_id, None)
        if not self.running:
            self._roles.pop(kernel.kernel_id, None)
            yield kernel.shutdown()
            yield self._unrecord(kernel.kernel_id)
            raise KernelStartError("the gateway is shutting down")
        self._kernels[kernel.kernel_id] = kernel
        log.info(
            "kernel {kernel_id} ({spec_name}) started in {duration_ms:.0f}ms",
            kernel_id=kernel.kernel_id,
            spec_name=kernel.spec_name,
            duration_ms=(self._clock.seconds() - began) * 1000,
            event="kernel_started",
        )
        return kernel

    def shutdown_kernel(self, kernel_id: str) -> defer.Deferred[None]:
        """Shut one kernel down and forget it; ``UnknownKernel`` if there is none."""
        try:
            kernel = self.get(kernel_id)
        except UnknownKernel as error:
            return defer.fail(error)
        if kernel.mirrored:
            assert self._peers is not None
            return shielded(self._peers.ask(kernel_id, "shutdown").addCallback(lambda _: self.unmirror(kernel_id, dead=False)))
        return shielded(self._shutdown(kernel))

    def _shutdown(self, kernel: Kernel, dead: bool = False) -> defer.Deferred[None]:
        if kernel.kernel_id in self._stopping:
            return self._stopping[kernel.kernel_id]
        if kernel.mirrored:
            self.unmirror(kernel.kernel_id, dead=False)
            return defer.succeed(None)
        self._kernels.pop(kernel.kernel_id, None)
        done = kernel.shutdown()

        def forget(result: Any) -> Any:
            self._stopping.pop(kernel.kernel_id, None)
            self._roles.pop(kernel.kernel_id, None)
            log.info("kernel {kernel_id} shut down", kernel_id=kernel.kernel_id, event="kernel_shutdown")
            return self._unrecord(kernel.kernel_id, dead).addCallback(lambda _: result)

        done.addBoth(forget)
        self._stopping[kernel.kernel_id] = done
        return done

    def _forget(self, kernel: Kernel) -> None:
        """A kernel died for good: release it and drop it from the set."""
        self._shutdown(kernel, dead=True)

    # -- replicas --------------------------------------------------------------

    def _restart_phase(self, kernel: Kernel, phase: str) -> None:
        if self._peers is not None and not kernel.mirrored:
            self._peers.restart_phase(kernel.kernel_id, phase)

    def mirrors(self) -> list[Kernel]:
        """The kernels another replica supervises that this one relays."""
        return [k for k in self.list() if k.mirrored]

    def mirror(self, record: KernelRecord, ask_owner: AskOwner) -> defer.Deferred[Kernel]:
        """Relay the kernel another replica supervises (``record``); fires once it answers kernel_info."""
        kernel_id = record.kernel_id
        if kernel_id in self._kernels:
            return defer.succeed(self._kernels[kernel_id])
        return self._mirroring.run(kernel_id, lambda: self._follow(record, ask_owner))

    @defer.inlineCallbacks
    def _follow(self, record: KernelRecord, ask_owner: AskOwner) -> Any:
        kernel_id = record.kernel_id
        try:
            spec = self.specs.get(record.spec_name)
        except UnknownKernelSpec:
            spec = stand_in_spec(record)
        kernel = self._make_kernel(kernel_id, record.spec_name, spec, record.env, record.cwd, record.started)
        kernel.activity.restore(record.last_activity)
        kernel.supervisor.restart_count = record.restart_count
        try:
            yield kernel.follow(record.connection_info, ask_owner, self._adopt_timeout)
        except Exception:
            kernel.detach()
            raise
        if kernel_id in self._kernels or not self.running:
            kernel.detach()  # taken over or started here meanwhile, or the daemon stops
            return self.get(kernel_id)
        self._kernels[kernel_id] = kernel
        self._roles[kernel_id] = record.role
        log.info("kernel {kernel_id} mirrored", kernel_id=kernel_id, event="kernel_mirrored")
        return kernel

    def unmirror(self, kernel_id: str, dead: bool) -> None:
        """Forget a mirror: its owner shut it down (``dead``: it died), or its record is gone."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None or not kernel.mirrored:
            return
        del self._kernels[kernel_id]
        self._roles.pop(kernel_id, None)
        kernel.detach(dead=dead)

    def let_go(self, kernel_id: str) -> None:
        """Stop supervising a kernel whose lease this replica lost (another may own it now); keep it as a mirror."""
        kernel = self._kernels.get(kernel_id)
        if kernel is not None and not kernel.mirrored and self._peers is not None:
            self._recorded_activity.pop(kernel_id, None)
            kernel.relinquish(self._peers.asker(kernel_id))

    @defer.inlineCallbacks
    def take_over(self, record: KernelRecord) -> Any:
        """Supervise the kernel of ``record`` from now on (this replica holds its lease); fire with it, or None if it was lost.

        A mirror becomes the supervised kernel in place, its clients attached.
        ``OnAnotherHost`` if only a replica on the kernel's own host can.
        """
        kernel = self._kernels.get(record.kernel_id)
        if kernel is not None and not kernel.mirrored:
            return kernel  # supervised here already
        return (yield self._adopt(record, foreign=OnAnotherHost, mirror=kernel))

    def stopService(self) -> defer.Deferred[Any]:
        """Shut every kernel down (or, detaching, leave the users' running), starting ones included.

        Kernels already shutting down are waited for too, so the daemon
        never exits while one of them may still be running.
        """
        super().stopService()
        if self._activity_writer.running:
            self._activity_writer.stop()
        already = list(self._stopping.values())
        stopping = list(self._starting.values())
        detaching = []
        for kernel in list(self._kernels.values()):
            if kernel.mirrored:
                self.unmirror(kernel.kernel_id, dead=False)
                continue
            record = self._record_of(kernel, self._roles.get(kernel.kernel_id, USER)) if self._record_of else None
            if self._detach_on_stop and self._store is not None and record is not None and record.role == USER:
                detaching.append(self._detach(kernel, record))
            else:
                stopping.append(kernel)
        return defer.DeferredList(
            [self._shutdown(k) for k in stopping] + detaching + already, consumeErrors=True
        )

    @defer.inlineCallbacks
    def _detach(self, kernel: Kernel, record: KernelRecord) -> Any:
        """Leave ``kernel`` running for the next daemon, its record current; shut it down if it cannot be recorded."""
        assert self._store is not None
        try:
            yield self._store.put(record)
        except Exception as error:
            log.error(
                "kernel {kernel_id} cannot be recorded ({error}); shutting it down",
                kernel_id=kernel.kernel_id,
                error=error,
            )
            yield self._shutdown(kernel)
            return
        self._kernels.pop(kernel.kernel_id, None)
        kernel.detach()
        if self._peers is not None:
            yield self._peers.handed_off(kernel.kernel_id).addErrback(self._store_failed, kernel.kernel_id)
        log.info(
            "kernel {kernel_id} left running for the next daemon (pid {pid})",
            kernel_id=kernel.kernel_id,
            pid=kernel.running.pid if kernel.running is not None else None,
            event="kernel_detached",
        )

    # -- the kernel store ------------------------------------------------------

    def _record(self, kernel: Kernel) -> None:
        """Record ``kernel`` as it runs now (a new process, a new role)."""
        if self._store is None or self._record_of is None or kernel.gone or kernel.mirrored:
            return
        record = self._record_of(kernel, self._roles.get(kernel.kernel_id, USER))
        if record is not None:
            self._recorded_activity[kernel.kernel_id] = record.last_activity
            self._store.put(record).addErrback(self._store_failed, kernel.kernel_id)

    def _record_activity(self) -> None:
        """Write the record of each kernel that was active since its record was last written."""
        for kernel in self.list():
            recorded = self._recorded_activity.get(kernel.kernel_id)
            if recorded is not None and kernel.last_activity.timestamp() != recorded:
                self._record(kernel)

    def _unrecord(self, kernel_id: str, dead: bool = False) -> defer.Deferred[None]:
        self._recorded_activity.pop(kernel_id, None)
        if self._store is None:
            return defer.succeed(None)
        removed = self._store.remove(kernel_id).addErrback(self._store_failed, kernel_id)
        if self._peers is not None:
            peers = self._peers
            removed.addCallback(lambda _: peers.ended(kernel_id, dead)).addErrback(self._store_failed, kernel_id)
        return removed

    def _store_failed(self, failure: Any, kernel_id: str) -> None:
        log.error(
            "kernel store: {error} (kernel {kernel_id})",
            error=failure.getErrorMessage(),
            kernel_id=kernel_id,
            event="kernel_store_failed",
        )

    def startService(self) -> None:
        super().startService()
        if self._store is not None:
            self._activity_writer.start(self._activity_interval, now=False)
        if self._store is None or self._adopt_process is None:
            self._adoption_finished()
            return
        if self._peers is not None:
            # Which recorded kernels are this replica's to adopt is the leases' business.
            self._peers.refresh().addErrback(
                lambda failure: log.warn("kernel store: {error}", error=failure.getErrorMessage(), event="kernel_store_failed")
            ).addCallback(lambda _: self._adoption_finished())
            return
        self._adopt_all().addErrback(
            lambda failure: log.failure("the kernel store could not be read", failure, event="kernel_store_failed")
        ).addCallback(lambda _: self._adoption_finished())

    def adopted(self) -> defer.Deferred[None]:
        """Fires once the service started and every recorded kernel was adopted or forgotten (for readiness)."""
        if self._adoption_over:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._adoption_waiters.append(waiter)
        return waiter

    def _adoption_finished(self) -> None:
        self._adoption_over = True
        waiters, self._adoption_waiters = self._adoption_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    @defer.inlineCallbacks
    def _adopt_all(self) -> Any:
        assert self._store is not None
        began = self._clock.seconds()
        records = yield self._store.load_all()
        outcomes = yield defer.DeferredList([self._adopt(r) for r in records], consumeErrors=True)
        adopted = sum(1 for ok, kernel in outcomes if ok and kernel is not None)
        log.info(
            "adopted {adopted} of {recorded} recorded kernels in {duration_ms:.0f}ms",
            adopted=adopted,
            recorded=len(records),
            duration_ms=(self._clock.seconds() - began) * 1000,
            event="kernels_adopted",
        )

    @defer.inlineCallbacks
    def _adopt(
        self, record: KernelRecord, foreign: type[Exception] | tuple[()] = (), mirror: Kernel | None = None
    ) -> Any:
        """Take over the kernel ``record`` describes; fire with it, or None if it was lost.

        An error of the ``foreign`` type is raised rather than counted as a
        loss.  A ``mirror`` of the kernel becomes the supervised one, its
        clients attached; otherwise a new ``Kernel`` is made.
        """
        assert self._adopt_process is not None
        try:
            spec = self.specs.get(record.spec_name)
            vanished = None
        except UnknownKernelSpec as error:  # removed, or no longer readable
            # Still adopted, so that it is stopped rather than left running unowned.
            spec, vanished = stand_in_spec(record), str(error)
        try:
            running = yield self._adopt_process(record, spec)
        except foreign:
            raise
        except Exception as error:  # CannotAdopt: for a mirror, it ended with its owner
            self.unmirror(record.kernel_id, dead=True)
            yield self._lose(record, str(error))
            return None
        kernel = mirror
        if kernel is None:
            kernel = self._make_kernel(record.kernel_id, record.spec_name, spec, record.env, record.cwd, record.started)
            kernel.activity.restore(record.last_activity)
        kernel.supervisor.restart_count = record.restart_count
        self._roles[kernel.kernel_id] = record.role
        # Listed while it is checked, as it was before the restart: clients reconnect at once.
        self._kernels[kernel.kernel_id] = kernel
        try:
            yield kernel.adopt(running, self._adopt_timeout)
        except Exception as error:
            self._kernels.pop(kernel.kernel_id, None)
            self._roles.pop(kernel.kernel_id, None)
            yield kernel.shutdown()
            yield self._lose(record, str(error))
            return None
        log.info(
            "kernel {kernel_id} ({spec_name}) adopted, pid {pid}",
            kernel_id=kernel.kernel_id,
            spec_name=kernel.spec_name,
            pid=running.pid,
            event="kernel_adopted",
        )
        if vanished is not None:
            yield self._shutdown(kernel)
            yield self._lose(record, f"{vanished}; it was shut down")
            return None
        if record.role != USER:
            # A pool's kernel: its pool starts afresh, so this one goes.
            yield self._shutdown(kernel)
            return None
        return kernel

    def _lose(self, record: KernelRecord, reason: str) -> defer.Deferred[None]:
        log.warn(
            "kernel {kernel_id} ({spec_name}) forgotten: {reason}",
            kernel_id=record.kernel_id,
            spec_name=record.spec_name,
            reason=reason,
            event="kernel_lost",
        )
        return self._unrecord(record.kernel_id, dead=True)


def stand_in_spec(record: KernelRecord) -> KernelSpec:
    """A kernelspec for a recorded kernel whose own is gone: enough to reach and stop it (through its provisioner, if it has one), not to restart it."""
    metadata: dict[str, Any] = {}
    if record.provisioner is not None:
        metadata["kernel_provisioner"] = {"provisioner_name": record.provisioner.name, "config": {}}
    return KernelSpec(argv=[], display_name=record.spec_name, language="", metadata=metadata)


def _kernel_id(kernel_or_id: Kernel | str) -> str:
    return kernel_or_id if isinstance(kernel_or_id, str) else kernel_or_id.kernel_id
