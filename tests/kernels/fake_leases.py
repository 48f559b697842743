"""An in-memory ``ILeaseTable`` on a ``task.Clock``: leases that expire when the clock says so."""

from __future__ import annotations

from twisted.internet import defer, task
from zope.interface import implementer

from kgd.interfaces import ILeaseTable
from kgd.kernels.records import StoreUnavailable


@implementer(ILeaseTable)
class MemoryLeaseTable:
    """Leases in a dict; ``unavailable`` makes every call fail as an unreachable Redis would."""

    def __init__(self, clock: task.Clock) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[str, float]] = {}
        self.unavailable = False

    def _current(self, kernel_id: str) -> str | None:
        lease = self._leases.get(kernel_id)
        if lease is None or lease[1] <= self._clock.seconds():
            self._leases.pop(kernel_id, None)
            return None
        return lease[0]

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("lease table unreachable")

    def acquire(self, kernel_id: str, owner: str, ttl: float) -> defer.Deferred[bool]:
        return defer.maybeDeferred(self._acquire, kernel_id, owner, ttl)

    def _acquire(self, kernel_id: str, owner: str, ttl: float) -> bool:
        self._check()
        if self._current(kernel_id) is not None:
            return False
        self._leases[kernel_id] = (owner, self._clock.seconds() + ttl)
        return True

    def renew(self, kernel_id: str, owner: str, ttl: float) -> defer.Deferred[bool]:
        return defer.maybeDeferred(self._renew, kernel_id, owner, ttl)

    def _renew(self, kernel_id: str, owner: str, ttl: float) -> bool:
        self._check()
        if self._current(kernel_id) != owner:
            return False
        self._leases[kernel_id] = (owner, self._clock.seconds() + ttl)
        return True

    def release(self, kernel_id: str, owner: str) -> defer.Deferred[bool]:
        return defer.maybeDeferred(self._release, kernel_id, owner)

    def _release(self, kernel_id: str, owner: str) -> bool:
        self._check()
        if self._current(kernel_id) != owner:
            return False
        del self._leases[kernel_id]
        return True

    def owner(self, kernel_id: str) -> defer.Deferred[str | None]:
        return defer.maybeDeferred(lambda: (self._check(), self._current(kernel_id))[1])
