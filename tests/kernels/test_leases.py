"""Kernel ownership among replicas on a ``task.Clock``: leases held, renewed, lost and taken over."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from kgd.interfaces import ILeaseTable
from kgd.kernels.leases import LeaseKeeper
from tests.kernels.fake_leases import MemoryLeaseTable

TTL = 9.0


class LeaseKeeperTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.table = MemoryLeaseTable(self.clock)
        self.lost: dict[str, list[str]] = {}

    def replica(self, name: str) -> LeaseKeeper:
        self.lost[name] = []
        keeper = LeaseKeeper(self.table, name, TTL, self.clock, self.lost[name].append)
        keeper.start()
        self.addCleanup(keeper.stop)
        return keeper

    def test_fake_table_provides_the_interface(self) -> None:
        """The in-memory table the tests use has the lease table's full interface."""
        self.assertTrue(verifyObject(ILeaseTable, self.table))

    def test_one_owner_per_kernel(self) -> None:
        """A replica acquires a free kernel; another replica cannot acquire it while the lease is held."""
        a, b = self.replica("a"), self.replica("b")
        self.assertTrue(self.successResultOf(a.acquire("k1")))
        self.assertFalse(self.successResultOf(b.acquire("k1")))
        self.assertEqual(a.held, {"k1"})
        self.assertEqual(b.held, frozenset())
        self.assertEqual(self.successResultOf(self.table.owner("k1")), "a")

    def test_renewal_keeps_the_kernel_for_many_ttls(self) -> None:
        """A live owner renews every TTL/3, so after ten TTLs it still owns the kernel and nobody can take it over."""
        a, b = self.replica("a"), self.replica("b")
        self.successResultOf(a.acquire("k1"))
        for _ in range(30):
            self.clock.advance(TTL / 3)
        self.assertFalse(self.successResultOf(b.acquire("k1")))
        self.assertEqual(a.held, {"k1"})
        self.assertEqual(self.lost["a"], [])

    def test_dead_owner_is_taken_over_by_exactly_one_replica(self) -> None:
        """When an owner stops renewing, its lease expires after the TTL and exactly one of two live replicas takes the kernel."""
        a, b, c = self.replica("a"), self.replica("b"), self.replica("c")
        self.successResultOf(a.acquire("k1"))
        a.stop()
        self.clock.advance(TTL - 0.1)
        self.assertFalse(self.successResultOf(b.acquire("k1")))
        self.clock.advance(0.1)
        won_b = self.successResultOf(b.acquire("k1"))
        won_c = self.successResultOf(c.acquire("k1"))
        self.assertEqual([won_b, won_c], [True, False])
        self.assertEqual(b.held, {"k1"})
        self.assertEqual(self.successResultOf(self.table.owner("k1")), "b")

    def test_paused_owner_stops_supervising_once_taken_over(self) -> None:
        """An owner that was paused past its TTL and lost the kernel to another replica is told so at its next renewal."""
        a, b = self.replica("a"), self.replica("b")
        self.successResultOf(a.acquire("k1"))
        a.stop()
        self.clock.advance(TTL)
        self.assertTrue(self.successResultOf(b.acquire("k1")))
        a.start()
        self.clock.advance(TTL / 3)
        self.assertEqual(self.lost["a"], ["k1"])
        self.assertEqual(a.held, frozenset())
        for _ in range(3):
            self.clock.advance(TTL / 3)
        self.assertEqual(b.held, {"k1"})
        self.assertEqual(self.lost["b"], [])

    def test_unreachable_table_loses_the_kernel_when_the_lease_may_have_expired(self) -> None:
        """While renewals fail the owner keeps the kernel until the TTL since its last renewal, then gives it up."""
        a = self.replica("a")
        self.successResultOf(a.acquire("k1"))
        self.table.unavailable = True
        self.clock.advance(TTL / 3)
        self.clock.advance(TTL / 3)
        self.assertEqual(self.lost["a"], [])
        self.assertEqual(a.held, {"k1"})
        self.clock.advance(TTL / 3)
        self.assertEqual(self.lost["a"], ["k1"])
        self.assertEqual(a.held, frozenset())

    def test_short_outage_keeps_the_kernel(self) -> None:
        """A renewal that fails once, followed by one that works, keeps the kernel."""
        a = self.replica("a")
        self.successResultOf(a.acquire("k1"))
        self.table.unavailable = True
        self.clock.advance(TTL / 3)
        self.table.unavailable = False
        for _ in range(6):
            self.clock.advance(TTL / 3)
        self.assertEqual(self.lost["a"], [])
        self.assertEqual(a.held, {"k1"})

    def test_release_frees_the_kernel_at_once(self) -> None:
        """A released kernel can be acquired by another replica immediately, and its old owner is not told it lost it."""
        a, b = self.replica("a"), self.replica("b")
        self.successResultOf(a.acquire("k1"))
        self.successResultOf(a.release("k1"))
        self.assertEqual(a.held, frozenset())
        self.assertTrue(self.successResultOf(b.acquire("k1")))
        self.clock.advance(TTL)
        self.assertEqual(self.lost["a"], [])
