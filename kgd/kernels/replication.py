"""Several replicas, one set of kernels: ownership, mirrors, takeover, and requests to owners.

With a Redis store every replica serves every kernel.  One replica, the
owner, supervises each kernel (watches and restarts its process, culls it)
and holds its lease (``LeaseKeeper``).  Every other replica that is asked
about the kernel mirrors it: a ``Kernel`` that follows the stored connection
info with sockets of its own, so its clients execute as they would on the
owner, and that asks the owner (a ``request`` event, answered by a ``reply``)
for what needs the process: a signal, a restart, a shutdown.

``Replication`` keeps this replica's view in step with the store, every
third of the lease TTL and on demand (``find``, ``refresh``): it forgets
mirrors whose record is gone and takes over each kernel whose lease is free (its owner died, or stopped and
let it go), if it can adopt it: a local kernel only from its own host, a
provisioned one from anywhere.  Of two replicas that try, the lease table
lets exactly one win.  Events (``kernel_deleted``, ``kernel_dead``) make an
owner's end of a kernel visible to every replica at once; the periodic
reconciliation covers what pub/sub lost while a replica was disconnected.
Mirrors are made when a client asks for a kernel (``find``) or lists them
(``refresh``), not ahead: a mirror receives all of its kernel's output, work
a replica no client of that kernel uses should not do.
Whether the store answers is a readiness condition (``kernel store``).
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from kgd.kernels.connection import KernelGone
from kgd.kernels.kernel import Kernel
from kgd.kernels.kernels import KernelLimitReached, Kernels, UnknownKernel
from kgd.kernels.leases import LeaseKeeper
from kgd.kernels.records import KernelRecord, OnAnotherHost, StoreUnavailable
from kgd.kernels.in_flight import InFlight
from kgd.kernels.replica_events import NoReply, PendingRequests, ReplicaEvent, encode_event, reply, request
from kgd.readiness import Readiness

log = Logger()

#: The readiness condition that holds while the shared store answers.
STORE_CONDITION = "kernel store"


class OwnerFailed(Exception):
    """The replica that supervises the kernel tried and failed; the message is its reason."""


class Replication(Service):
    """This replica among the others: the kernels it owns, mirrors and takes over."""

    name = "replication"

    def __init__(
        self,
        kernels: Kernels,
        store: Any,
        keeper: LeaseKeeper,
        replica_id: str,
        clock: IReactorTime,
        readiness: Readiness,
        *,
        lease_ttl: float,
        request_timeout: float | None = None,
        max_kernels: int | None = None,
    ) -> None:
        """``store`` is a ``RedisKernelStore``: records, leases, slots and ``publish``.

        An owner's answer is awaited ``request_timeout`` seconds, by default a
        second longer than a lease lasts, so that an owner that died meanwhile
        has lost its lease by then and the kernel can be taken over instead.
        """
        self._kernels = kernels
        self._store = store
        self._keeper = keeper
        self.replica_id = replica_id
        self._clock = clock
        self._readiness = readiness
        self._max_kernels = max_kernels
        self._pending = PendingRequests(replica_id, clock, lease_ttl + 1 if request_timeout is None else request_timeout)
        self._refreshing: InFlight[None] = InFlight()
        self._declined: set[str] = set()  # kernels of another host, said once
        self._taking_over: InFlight[Kernel | None] = InFlight()
        self._loop = task.LoopingCall(self._reconcile_quietly)
        self._loop.clock = clock
        self._interval = lease_ttl / 3
        readiness.expect(STORE_CONDITION)
        kernels.replicate_with(self)

    def startService(self) -> None:
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    # -- what Kernels asks (kgd.kernels.kernels.Peers) --------------------------

    @defer.inlineCallbacks
    def claim(self, kernel_id: str) -> Any:
        """Take a ``--max-kernels`` slot, then the lease, of a kernel about to start here."""
        if self._max_kernels is not None and not (yield self._store.reserve_slot(kernel_id, self._max_kernels)):
            raise KernelLimitReached(f"Resource Limit: at most {self._max_kernels} kernels across replicas")
        if not (yield self._keeper.acquire(kernel_id)):
            raise KernelLimitReached(f"kernel {kernel_id} is already supervised by another replica")

    @defer.inlineCallbacks
    def ended(self, kernel_id: str, dead: bool) -> Any:
        """Tell every replica the kernel is gone, then free its lease and slot."""
        kind = "kernel_dead" if dead else "kernel_deleted"
        yield self._publish(ReplicaEvent(kind, kernel_id, self.replica_id))
        yield self._keeper.release(kernel_id)
        if self._max_kernels is not None:
            yield self._store.release_slot(kernel_id)

    def restart_phase(self, kernel_id: str, phase: str) -> None:
        """Tell the other replicas: their clients see ``status: restarting``, and once restarted their mirrors reconnect."""
        self._publish(ReplicaEvent(f"kernel_{phase}", kernel_id, self.replica_id)).addErrback(
            lambda failure: log.warn("kernel {kernel_id}: restart not announced: {error}", kernel_id=kernel_id, error=failure.getErrorMessage())
        )

    def handed_off(self, kernel_id: str) -> defer.Deferred[None]:
        """Free the lease of a kernel left running, so that a live replica takes it over without waiting for the TTL."""
        return self._keeper.release(kernel_id)

    @defer.inlineCallbacks
    def find(self, kernel_id: str) -> Any:
        """Mirror (or, if nobody supervises it, take over) the kernel of that id from its record."""
        if kernel_id in self._taking_over:
            return (yield self._taking_over.wait(kernel_id))
        if kernel_id in self._keeper.held:
            raise UnknownKernel(kernel_id)  # still starting here: listed once it answers
        record = yield self._store.get(kernel_id)
        if record is None:
            raise UnknownKernel(kernel_id)
        owner = yield self._store.owner(kernel_id)
        if owner is None or owner == self.replica_id:
            kernel = yield self._take_over(record)
            if kernel is not None:
                return kernel
        return (yield self._kernels.mirror(record, self.asker(kernel_id)))

    def refresh(self) -> defer.Deferred[None]:
        """Reconcile with the store and mirror every kernel this replica does not have; callers at the same time share one pass."""
        return self._refreshing.run("refresh", lambda: self._reconcile(mirror=True))

    @defer.inlineCallbacks
    def ask(self, kernel_id: str, action: str) -> Any:
        """Have the owner of ``kernel_id`` interrupt, restart or shut it down; with no owner, take it over and do it here."""
        owner = yield self._store.owner(kernel_id)
        if owner is None or owner == self.replica_id:
            record = yield self._store.get(kernel_id)
            if record is None:
                raise KernelGone(kernel_id)
            kernel = yield self._take_over(record)
            if kernel is None:
                raise OwnerFailed(f"kernel {kernel_id} has no live owner this replica can stand in for")
            yield self._act(kernel_id, action)
            return
        sent = request(self.replica_id, owner, kernel_id, action, uuid.uuid4().hex)
        answer = self._pending.expect(sent)
        yield self._publish(sent)
        try:
            answered = yield answer
        except NoReply:
            # The timeout outlasts a lease: an owner that died without answering has lost its lease by now.
            if (yield self._store.owner(kernel_id)) == owner:
                raise  # alive enough to renew its lease, yet silent
            return (yield self.ask(kernel_id, action))
        if not answered.ok:
            if answered.reason == "gone":
                raise KernelGone(kernel_id)
            raise OwnerFailed(f"replica {owner}: {answered.reason}")

    def asker(self, kernel_id: str) -> Callable[[str], defer.Deferred[None]]:
        """``ask`` for one kernel, as a mirror holds it."""
        return lambda action: self.ask(kernel_id, action)

    # -- events from the other replicas -----------------------------------------

    def received(self, event: ReplicaEvent) -> None:
        """Act on one event another replica published."""
        if event.origin == self.replica_id:
            return
        if event.kind == "reply":
            self._pending.received(event)
        elif event.kind == "request":
            if event.target == self.replica_id:
                self._answer(event)
        elif event.kind in ("kernel_deleted", "kernel_dead"):
            self._kernels.unmirror(event.kernel_id, dead=event.kind == "kernel_dead")
        elif event.kind in ("kernel_restarting", "kernel_restarted"):
            for kernel in self._kernels.mirrors():
                if kernel.kernel_id != event.kernel_id:
                    continue
                if event.kind == "kernel_restarting":
                    kernel.activity.execution_state = "restarting"
                    kernel.connection.broadcast_status("restarting")
                else:
                    kernel.reconnected().addErrback(
                        lambda failure: log.warn("mirror not reconnected after a restart: {error}", error=failure.getErrorMessage())
                    )

    def _answer(self, event: ReplicaEvent) -> None:
        assert event.action is not None

        def answered(result: Any) -> defer.Deferred[None]:
            failure = result if isinstance(result, Failure) else None
            if failure is None:
                answer = reply(event, self.replica_id, ok=True)
            elif failure.check(UnknownKernel, KernelGone):
                answer = reply(event, self.replica_id, ok=False, reason="gone")
            else:
                answer = reply(event, self.replica_id, ok=False, reason=failure.getErrorMessage())
            return self._publish(answer)

        self._act(event.kernel_id, event.action).addBoth(answered).addErrback(
            lambda failure: log.warn("could not answer replica {origin}: {error}", origin=event.origin, error=failure.getErrorMessage())
        )

    def _act(self, kernel_id: str, action: str) -> defer.Deferred[None]:
        """Do ``action`` to a kernel this replica supervises."""
        try:
            kernel = self._kernels.get(kernel_id)
        except UnknownKernel as error:
            return defer.fail(error)
        if kernel.mirrored:
            return defer.fail(OwnerFailed(f"replica {self.replica_id} does not supervise kernel {kernel_id}"))
        if action == "interrupt":
            return defer.maybeDeferred(kernel.interrupt)
        if action == "restart":
            return kernel.restart()
        return self._kernels.shutdown_kernel(kernel_id)

    # -- reconciliation ----------------------------------------------------------

    def _reconcile_quietly(self) -> defer.Deferred[None]:
        return self._reconcile(mirror=False).addErrback(
            lambda failure: log.warn("kernel store: {error}", error=failure.getErrorMessage(), event="kernel_store_failed")
        )

    @defer.inlineCallbacks
    def _reconcile(self, mirror: bool) -> Any:
        try:
            records = yield self._store.load_all()
            owners = yield self._store.owners([record.kernel_id for record in records])
        except StoreUnavailable:
            self._readiness.lost(STORE_CONDITION)
            raise
        self._readiness.done(STORE_CONDITION)
        recorded = {record.kernel_id for record in records}
        self._declined &= recorded
        for kernel in self._kernels.mirrors():
            if kernel.kernel_id not in recorded:
                self._kernels.unmirror(kernel.kernel_id, dead=False)
        following = []
        for record, owner in zip(records, owners):
            if record.kernel_id in self._keeper.held:
                continue
            if owner is None or owner == self.replica_id:
                following.append(self._take_over(record))
            elif mirror and not self._kernels.known(record.kernel_id):
                following.append(self._kernels.mirror(record, self.asker(record.kernel_id)))
        outcomes = yield defer.DeferredList(following, consumeErrors=True)
        for ok, result in outcomes:
            if not ok:
                log.warn("kernel not mirrored: {error}", error=result.getErrorMessage(), event="kernel_mirror_failed")
        if self._max_kernels is not None:
            yield self._free_stray_slots(recorded)

    @defer.inlineCallbacks
    def _free_stray_slots(self, recorded: set[str]) -> Any:
        """Free the slots of kernels with neither a record nor a lease: their replica died while starting them."""
        stray = [kernel_id for kernel_id in (yield self._store.slot_holders()) if kernel_id not in recorded]
        for kernel_id, owner in zip(stray, (yield self._store.owners(stray))):
            if owner is None:
                log.info("kernel slot of {kernel_id} freed: nobody started it", kernel_id=kernel_id, event="kernel_slot_freed")
                yield self._store.release_slot(kernel_id)

    def _take_over(self, record: KernelRecord) -> defer.Deferred[Kernel | None]:
        """Supervise ``record``'s kernel if its lease is free and this replica can adopt it; fire with it, or None.

        One takeover per kernel at a time: a request for the kernel meanwhile waits for it (``find``)."""
        return self._taking_over.run(record.kernel_id, lambda: self._adopt_if_free(record))

    @defer.inlineCallbacks
    def _adopt_if_free(self, record: KernelRecord) -> Any:
        if not (yield self._keeper.acquire(record.kernel_id)):
            return None
        try:
            kernel = yield self._kernels.take_over(record)
        except OnAnotherHost as error:
            if record.kernel_id not in self._declined:
                self._declined.add(record.kernel_id)
                log.warn(
                    "kernel {kernel_id} has no supervisor; it is left to a replica on its host: {reason}",
                    kernel_id=record.kernel_id, reason=str(error), event="kernel_takeover_declined",
                )
            yield self._keeper.release(record.kernel_id)
            return None
        self._declined.discard(record.kernel_id)
        if kernel is not None:
            log.info(
                "kernel {kernel_id} taken over by {replica}",
                kernel_id=record.kernel_id, replica=self.replica_id, event="kernel_taken_over",
            )
        return kernel

    def _publish(self, event: ReplicaEvent) -> defer.Deferred[None]:
        return self._store.publish(encode_event(event)).addCallback(lambda _: None)

