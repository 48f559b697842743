"""Kernel ownership among replicas: hold, renew and lose leases, take orphaned kernels over.

Each replica supervises only the kernels it holds a lease on
(``kgd.interfaces.ILeaseTable``).  A ``LeaseKeeper`` acquires leases, renews
every held lease every ``ttl / 3``, and gives a kernel up (``on_lost``) as
soon as it can no longer be sure it owns it: when a renewal says another
replica holds the lease, or when the lease may have expired because renewals
kept failing (the table unreachable).  The second rule matters: once the TTL
has passed since the last renewal was sent, another replica may already
have taken the kernel over, so supervising on would mean two supervisors.

Takeover is ``acquire`` on a kernel whose lease is free; the table grants it
to exactly one contender (``kgd.kernels.replication`` does it).  The clock is passed in; no I/O here.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kgd.interfaces import ILeaseTable
from kgd.kernels.records import StoreUnavailable

log = Logger()


class LeaseKeeper:
    """The leases one replica (``owner``) holds, kept alive on ``clock``."""

    def __init__(
        self,
        table: ILeaseTable,
        owner: str,
        ttl: float,
        clock: IReactorTime,
        on_lost: Callable[[str], None],
    ) -> None:
        self._table = table
        self._owner = owner
        self._ttl = ttl
        self._clock = clock
        self._on_lost = on_lost
        self._valid_until: dict[str, float] = {}
        self._renewing = task.LoopingCall(self._renew_all)
        self._renewing.clock = clock

    @property
    def held(self) -> frozenset[str]:
        """The kernels this replica holds a lease on (and so supervises)."""
        return frozenset(self._valid_until)

    def start(self) -> None:
        """Renew every held lease every ``ttl / 3`` seconds until ``stop()``."""
        self._renewing.start(self._ttl / 3, now=False).addErrback(
            lambda failure: log.failure("lease renewal stopped", failure)
        )

    def stop(self) -> None:
        """Stop renewing (the leases then expire after their TTL unless released)."""
        if self._renewing.running:
            self._renewing.stop()

    @defer.inlineCallbacks
    def acquire(self, kernel_id: str) -> defer.Deferred[bool]:
        """Take the lease on ``kernel_id`` if it is free; True if this replica now owns the kernel."""
        sent = self._clock.seconds()
        won = yield self._table.acquire(kernel_id, self._owner, self._ttl)
        if not won:
            # Held under this replica's own name by an earlier life of it (restarted with the same --replica-id).
            won = yield self._table.renew(kernel_id, self._owner, self._ttl)
        if won:
            self._valid_until[kernel_id] = sent + self._ttl
        return won

    def release(self, kernel_id: str) -> defer.Deferred[None]:
        """Stop owning ``kernel_id`` (its kernel was shut down here) and free its lease."""
        self._valid_until.pop(kernel_id, None)
        return self._table.release(kernel_id, self._owner).addCallback(lambda _: None)

    def _renew_all(self) -> defer.Deferred[None]:
        return defer.gatherResults(
            [self._renew(kernel_id) for kernel_id in list(self._valid_until)], consumeErrors=True
        ).addCallback(lambda _: None)

    @defer.inlineCallbacks
    def _renew(self, kernel_id: str) -> defer.Deferred[None]:
        sent = self._clock.seconds()
        try:
            still_ours = yield self._table.renew(kernel_id, self._owner, self._ttl)
        except StoreUnavailable as error:
            if kernel_id in self._valid_until and self._clock.seconds() >= self._valid_until[kernel_id]:
                self._lose(kernel_id, f"could not renew before the lease expired: {error}")
            return
        if kernel_id not in self._valid_until:
            return  # released while the renewal was under way
        if still_ours:
            self._valid_until[kernel_id] = sent + self._ttl
        else:
            self._lose(kernel_id, "another replica holds the lease")

    def _lose(self, kernel_id: str, reason: str) -> None:
        del self._valid_until[kernel_id]
        log.warn(
            "lost the lease on kernel {kernel_id}: {reason}; no longer supervising it",
            kernel_id=kernel_id, reason=reason, event="kernel_lease_lost",
        )
        self._on_lost(kernel_id)
