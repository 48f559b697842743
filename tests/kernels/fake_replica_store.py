"""An in-memory shared store for replica tests: records, leases, kernel slots and events on a ``task.Clock``.

What ``RedisKernelStore`` does across processes, done in dicts for several
``Replication``s in one test: leases expire when the clock says so, events
reach every subscriber on the next turn, and ``unavailable`` fails every call
as an unreachable Redis does.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer, task
from zope.interface import implementer

from kgd.interfaces import IKernelStore, ILeaseTable
from kgd.kernels.records import KernelRecord, decode_record, encode_record
from kgd.kernels.replica_events import ReplicaEvent, decode_event
from tests.kernels.fake_leases import MemoryLeaseTable


@implementer(IKernelStore, ILeaseTable)
class MemoryReplicaStore(MemoryLeaseTable):
    """Kernel records (encoded, as Redis keeps them), leases, slots and pub/sub in memory."""

    def __init__(self, clock: task.Clock) -> None:
        super().__init__(clock)
        self.records: dict[str, bytes] = {}
        self.slots: set[str] = set()
        self.subscribers: list[Callable[[ReplicaEvent], None]] = []
        self.published: list[ReplicaEvent] = []

    def _call(self, function: Callable[..., object], *args: object) -> defer.Deferred:
        def checked() -> object:
            self._check()
            return function(*args)

        return defer.maybeDeferred(checked)

    # IKernelStore

    def load_all(self) -> defer.Deferred[list[KernelRecord]]:
        return self._call(lambda: [decode_record(raw) for _, raw in sorted(self.records.items())])

    def get(self, kernel_id: str) -> defer.Deferred[KernelRecord | None]:
        return self._call(lambda: decode_record(self.records[kernel_id]) if kernel_id in self.records else None)

    def put(self, record: KernelRecord) -> defer.Deferred[None]:
        return self._call(self.records.__setitem__, record.kernel_id, encode_record(record))

    def remove(self, kernel_id: str) -> defer.Deferred[None]:
        return self._call(lambda: self.records.pop(kernel_id, None) and None)

    # what RedisKernelStore adds

    def owners(self, kernel_ids: list[str]) -> defer.Deferred[list[str | None]]:
        return self._call(lambda: [self._current(kernel_id) for kernel_id in kernel_ids])

    def reserve_slot(self, kernel_id: str, maximum: int) -> defer.Deferred[bool]:
        def reserve() -> bool:
            if kernel_id in self.slots or len(self.slots) < maximum:
                self.slots.add(kernel_id)
                return True
            return False

        return self._call(reserve)

    def slot_holders(self) -> defer.Deferred[list[str]]:
        return self._call(lambda: sorted(self.slots))

    def release_slot(self, kernel_id: str) -> defer.Deferred[None]:
        return self._call(self.slots.discard, kernel_id)

    def publish(self, message: bytes) -> defer.Deferred[int]:
        def deliver() -> int:
            event = decode_event(message)
            self.published.append(event)
            for subscriber in list(self.subscribers):
                self._clock.callLater(0, subscriber, event)
            return len(self.subscribers)

        return self._call(deliver)
