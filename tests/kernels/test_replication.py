"""Replicas sharing one store, on a ``task.Clock``: mirrors, requests to owners, takeover, limits, an unreachable store.

Each replica is what ``makeService`` builds for ``--kernel-store redis://``
(``Kernels``, ``LeaseKeeper``, ``Replication``) over one in-memory store;
the fake kernel processes (``tests.kernels.fakes``) outlive a replica that
crashes, as detached kernels do.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kgd.interfaces import IKernelStore, ILeaseTable, IRunningKernel
from kgd.kernels import messages
from kgd.kernels.adoption import KernelAdopter, record_of
from kgd.kernels.culling import CullPolicy, Culler
from kgd.kernels.kernel import Kernel
from kgd.kernels.kernels import KernelLimitReached, Kernels, UnknownKernel
from kgd.kernels.leases import LeaseKeeper
from kgd.kernels.prespawn import PRESPAWN
from kgd.kernels.records import CannotAdopt, KernelRecord, OnAnotherHost, StoreUnavailable
from kgd.kernels.replica_events import NoReply
from kgd.kernels.replication import STORE_CONDITION, Replication
from kgd.readiness import Readiness
from tests.kernels.fake_replica_store import MemoryReplicaStore
from tests.kernels.fakes import FAKE_HOST, FakeRunningKernel, fake_machine

TTL = 3.0


class Replica:
    """One kgd replica of the test: its kernels, lease keeper and replication over the shared store."""

    def __init__(self, test: "ReplicationTestCase", name: str, host: str = FAKE_HOST, max_kernels: int | None = None) -> None:
        self.test = test
        self.name = name
        self.host = host
        self.kernels = Kernels(
            test.specs, test.launcher, test.sockets, test.clock,
            store=test.store, record_of=record_of,
            adopt_process=KernelAdopter(lambda record: self.adopt(record), self.no_provisioner),
            adopt_timeout=5, detach_on_stop=True,
        )
        self.keeper = LeaseKeeper(test.store, name, TTL, test.clock, on_lost=self.kernels.let_go)
        self.readiness = Readiness()
        self.replication = Replication(
            self.kernels, test.store, self.keeper, name, test.clock, self.readiness,
            lease_ttl=TTL, max_kernels=max_kernels,
        )
        self.listening = True
        test.store.subscribers.append(self.received)
        self.keeper.start()
        self.kernels.startService()
        self.replication.startService()
        test.settle()

    def received(self, event: Any) -> None:
        if self.listening:
            self.replication.received(event)

    def adopt(self, record: KernelRecord) -> IRunningKernel:
        """The surviving fake process a record names, from this replica's host only (as ``ProcessAdopter``)."""
        assert record.process is not None
        if record.process.host != self.host:
            raise OnAnotherHost(f"its process runs on host {record.process.host!r}")
        for fake in self.test.launcher.alive():
            if fake.pid == record.process.pid:
                return fake
        raise CannotAdopt("its process is gone")

    def no_provisioner(self, record: KernelRecord, spec: Any) -> defer.Deferred[IRunningKernel]:
        return defer.fail(CannotAdopt("no provisioner here"))

    def crash(self) -> None:
        """SIGKILL: nothing renewed, reconciled or received any more; the kernel processes live on."""
        self.listening = False
        self.keeper.stop()
        self.replication.stopService()
        for kernel in self.kernels.list():
            kernel.supervisor.detach()  # a dead daemon restarts nothing

    def start(self) -> Kernel:
        started = self.kernels.start_kernel("python3")
        self.test.settle()
        return self.test.successResultOf(started)

    def find(self, kernel_id: str) -> Kernel:
        found = self.kernels.find(kernel_id)
        self.test.settle()
        return self.test.successResultOf(found)


class ReplicationTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        machine = fake_machine(self.mktemp())
        self.clock, self.sockets, self.launcher, self.specs = machine.clock, machine.sockets, machine.launcher, machine.specs
        self.clock.advance(1_800_000_000)
        self.store = MemoryReplicaStore(self.clock)

    def settle(self) -> None:
        for _ in range(30):
            self.clock.advance(0)

    def pass_time(self, seconds: float, step: float = 0.25) -> None:
        """Let ``seconds`` go by in small steps, every timer and callback running as it would."""
        for _ in range(int(seconds / step)):
            self.clock.advance(step)
            self.settle()

    def execute(self, kernel: Kernel) -> list[str]:
        """Run one execute_request through a client of ``kernel``; the types of the replies it got."""
        got: list[str] = []
        client = kernel.client(lambda channel, message: got.append(message.msg_type))
        request = messages.new_message("execute_request", {"code": "1", "silent": False}, session="client")
        client.send("shell", request)
        self.settle()
        client.close()
        return got

    def fake_of(self, kernel: Kernel) -> FakeRunningKernel:
        port = kernel.connection_info["shell_port"]
        return next(fake for fake in self.launcher.alive() if fake.connection_info["shell_port"] == port)


class StoreFakeTests(ReplicationTestCase):
    def test_memory_store_has_the_interfaces_of_the_redis_store(self) -> None:
        self.assertTrue(verifyObject(IKernelStore, self.store))
        self.assertTrue(verifyObject(ILeaseTable, self.store))


class MirrorTests(ReplicationTestCase):
    def test_a_kernel_started_on_one_replica_is_served_by_another(self) -> None:
        """B mirrors A's kernel from its record: same model, and its clients get their own replies from the kernel."""
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        self.assertTrue(mirror.mirrored)
        self.assertFalse(kernel.mirrored)
        self.assertEqual(mirror.model()["id"], kernel.kernel_id)
        self.assertEqual(mirror.model()["name"], "python3")
        self.assertIn("execute_reply", self.execute(mirror))
        self.assertEqual(len(self.launcher.launches), 1, "a mirror starts no process")

    def test_unknown_kernel_is_unknown_everywhere(self) -> None:
        b = Replica(self, "b")
        self.failureResultOf(b.kernels.find("00000000-0000-0000-0000-000000000000"), UnknownKernel)

    def test_refresh_lists_every_replicas_kernels(self) -> None:
        a, b = Replica(self, "a"), Replica(self, "b")
        ids = {a.start().kernel_id, a.start().kernel_id}
        refreshed = b.kernels.refresh()
        self.settle()
        self.successResultOf(refreshed)
        self.assertEqual({k.kernel_id for k in b.kernels.list()}, ids)


class RequestTests(ReplicationTestCase):
    def test_interrupt_restart_and_shutdown_through_a_mirror_reach_the_owner(self) -> None:
        a, b, c = Replica(self, "a"), Replica(self, "b"), Replica(self, "c")
        kernel = a.start()
        fake = self.fake_of(kernel)
        mirror = b.find(kernel.kernel_id)
        statuses: list[bytes] = []
        c.find(kernel.kernel_id).add_iopub_listener(
            lambda message: statuses.append(message.content) if message.msg_type == "status" else None
        )

        interrupted = mirror.interrupt()
        self.settle()
        self.successResultOf(interrupted)
        self.assertEqual(fake.signals, [signal.SIGINT])

        restarted = mirror.restart()
        self.settle()
        self.successResultOf(restarted)
        self.assertTrue(fake.ended)
        self.assertEqual(len(self.launcher.launches), 2)
        self.assertEqual(self.launcher.launches[1]["connection_info"], fake.connection_info, "same ports: mirrors stay connected")
        self.assertIn(b"restarting", b"".join(statuses), "a third replica's clients see the restart")
        new_fake = self.launcher.alive()[0]
        handshakes = {message.header for _, message in new_fake.messages_of("kernel_info_request")}
        self.assertGreaterEqual(len(handshakes), 3, "the owner and both mirrors checked the new process answers")
        self.assertEqual(mirror.execution_state, "idle")
        self.assertIn("execute_reply", self.execute(mirror))

        deleted = b.kernels.shutdown_kernel(kernel.kernel_id)
        self.settle()
        self.successResultOf(deleted)
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(self.store.records, {})
        for replica in (a, b, c):
            self.assertEqual(replica.kernels.list(), [], replica.name)
        self.assertTrue(mirror.gone)
        self.assertIsNone(self.successResultOf(self.store.owner(kernel.kernel_id)))

    def test_a_silent_owner_fails_the_request_after_the_timeout(self) -> None:
        """An owner that holds its lease but answers nothing: the request fails with NoReply, never hangs."""
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        a.listening = False
        interrupted = mirror.interrupt()
        self.pass_time(6)
        self.failureResultOf(interrupted, NoReply)
        self.assertEqual(self.fake_of(kernel).signals, [])


class TakeoverTests(ReplicationTestCase):
    def test_when_the_owner_dies_exactly_one_replica_takes_the_kernel_over_in_place(self) -> None:
        a, b, c = Replica(self, "a"), Replica(self, "b"), Replica(self, "c")
        kernel = a.start()
        fake = self.fake_of(kernel)
        mirrors = {"b": b.find(kernel.kernel_id), "c": c.find(kernel.kernel_id)}
        a.crash()
        self.pass_time(TTL + TTL / 3 + 0.5)
        owners = [name for name, mirror in mirrors.items() if not mirror.mirrored]
        self.assertEqual(len(owners), 1, "exactly one supervisor")
        self.assertEqual(self.successResultOf(self.store.owner(kernel.kernel_id)), owners[0])
        self.assertEqual(len(self.launcher.launches), 1, "the same process, not a new one")
        self.assertFalse(fake.ended)
        # The winner's object is the mirror it had: its clients stayed attached.
        winner, loser = (b, c) if owners == ["b"] else (c, b)
        self.assertIs(winner.kernels.get(kernel.kernel_id), mirrors[winner.name])
        self.assertIn("execute_reply", self.execute(mirrors[winner.name]))
        interrupted = loser.kernels.get(kernel.kernel_id).interrupt()
        self.settle()
        self.successResultOf(interrupted)
        self.assertEqual(fake.signals, [signal.SIGINT], "the new owner signals the process")

    def test_a_kernel_of_another_host_is_left_to_a_replica_on_that_host(self) -> None:
        a, b = Replica(self, "a"), Replica(self, "b", host="elsewhere")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        a.crash()
        self.pass_time(TTL * 2)
        self.assertTrue(mirror.mirrored)
        self.assertIn(kernel.kernel_id, self.store.records, "not forgotten: a replica on its host can adopt it")
        self.assertIsNone(self.successResultOf(self.store.owner(kernel.kernel_id)))
        c = Replica(self, "c")
        self.pass_time(TTL)
        self.assertFalse(c.kernels.get(kernel.kernel_id).mirrored)

    def test_a_kernel_that_died_with_its_owner_is_forgotten_everywhere(self) -> None:
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        a.crash()
        self.fake_of(kernel).end(None)
        self.pass_time(TTL * 2)
        self.assertTrue(mirror.gone)
        self.assertEqual(b.kernels.list(), [])
        self.assertEqual(self.store.records, {})

    def test_request_to_a_kernel_without_owner_takes_it_over_first(self) -> None:
        """Asked before the periodic pass noticed the dead owner, B takes the kernel over and interrupts it itself."""
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        a.crash()
        self.clock.advance(TTL + 0.1)  # the lease expired; no pass of B's ran yet
        interrupted = mirror.interrupt()
        self.settle()
        self.successResultOf(interrupted)
        self.assertFalse(mirror.mirrored)
        self.assertEqual(self.fake_of(kernel).signals, [signal.SIGINT])

    def test_a_replica_restarted_under_its_name_resumes_its_kernels_at_once(self) -> None:
        a = Replica(self, "a")
        kernel = a.start()
        a.crash()
        again = Replica(self, "a")
        self.assertFalse(again.kernels.get(kernel.kernel_id).mirrored)
        self.assertEqual(len(self.launcher.launches), 1)

    def test_stopping_hands_kernels_to_a_live_replica_without_waiting_for_the_ttl(self) -> None:
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        a.replication.stopService()
        stopped = a.kernels.stopService()
        self.settle()
        self.successResultOf(stopped)
        self.pass_time(TTL / 3 + 0.25)
        self.assertFalse(mirror.mirrored)
        self.assertFalse(self.fake_of(kernel).ended)


class LimitAndStoreTests(ReplicationTestCase):
    def test_max_kernels_holds_across_replicas(self) -> None:
        a, b = Replica(self, "a", max_kernels=1), Replica(self, "b", max_kernels=1)
        kernel = a.start()
        refused = b.kernels.start_kernel("python3")
        self.settle()
        self.failureResultOf(refused, KernelLimitReached)
        self.assertEqual(len(self.launcher.launches), 1)
        deleted = a.kernels.shutdown_kernel(kernel.kernel_id)
        self.settle()
        self.successResultOf(deleted)
        self.assertFalse(b.start().mirrored)

    def test_unreachable_store_is_an_error_and_not_ready_then_recovers(self) -> None:
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        self.assertNotIn(STORE_CONDITION, b.readiness.pending())
        self.store.unavailable = True
        self.pass_time(TTL / 3 + 0.25)
        self.assertIn(STORE_CONDITION, b.readiness.pending())
        self.failureResultOf(b.kernels.find("00000000-0000-0000-0000-000000000000"), StoreUnavailable)
        self.failureResultOf(b.kernels.start_kernel("python3"), StoreUnavailable)
        self.assertIn("execute_reply", self.execute(mirror), "open connections keep relaying")
        self.store.unavailable = False
        self.pass_time(TTL / 3 + 0.25)
        self.assertTrue(b.readiness.ready)
        self.assertFalse(kernel.gone)
        self.assertIs(b.kernels.get(kernel.kernel_id), mirror)


class CullingTests(ReplicationTestCase):
    def test_only_the_owner_culls(self) -> None:
        """B's culler leaves A's idle kernel alone; A's culler ends it, and B's mirror goes with it."""
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        b_culler = Culler(b.kernels, CullPolicy(idle_timeout=30, interval=10), self.clock)
        culled = b_culler.cull_once()
        self.clock.advance(100)
        self.settle()
        self.successResultOf(b_culler.cull_once())
        self.successResultOf(culled)
        self.assertEqual(self.fake_of(kernel).signals + self.fake_of(kernel).shutdowns_requested, [])
        self.assertFalse(mirror.gone)
        a_culler = Culler(a.kernels, CullPolicy(idle_timeout=30, interval=10), self.clock)
        a_culler.cull_once()
        self.pass_time(1)
        self.assertTrue(kernel.gone)
        self.assertTrue(mirror.gone)
        self.assertEqual(self.launcher.alive(), [])

    def test_an_owner_cut_off_past_the_ttl_stops_supervising_but_keeps_relaying(self) -> None:
        """Redis gone longer than the TTL: the owner may have lost the kernel, so it stops supervising
        (its process is not restarted by two replicas) yet its clients keep executing; once Redis is back one
        replica supervises it again, the same process."""
        a = Replica(self, "a")
        kernel = a.start()
        fake = self.fake_of(kernel)
        self.store.unavailable = True
        self.pass_time(TTL + 1)
        self.assertTrue(kernel.mirrored)
        self.assertFalse(kernel.gone)
        self.assertIn("execute_reply", self.execute(kernel))
        self.store.unavailable = False
        self.pass_time(TTL)
        self.assertFalse(kernel.mirrored)
        self.assertIs(a.kernels.get(kernel.kernel_id), kernel)
        self.assertEqual(len(self.launcher.launches), 1)
        self.assertFalse(fake.ended)


class DeadReplicaTests(ReplicationTestCase):
    def test_a_request_to_an_owner_that_just_died_waits_for_its_lease_then_takes_over(self) -> None:
        """Killed before its lease ran out: the request is not answered, the lease expires, B takes over and deletes."""
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        mirror = b.find(kernel.kernel_id)
        a.crash()
        deleted = b.kernels.shutdown_kernel(kernel.kernel_id)
        self.pass_time(TTL + 1.5, step=0.1)
        self.successResultOf(deleted)
        self.assertTrue(mirror.gone)
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(self.store.records, {})

    def test_a_slot_left_by_a_replica_that_died_starting_a_kernel_is_freed(self) -> None:
        """A slot with no record and no lease behind it (the replica died mid-start) does not cost capacity for ever."""
        a = Replica(self, "a", max_kernels=1)
        self.store.slots.add("11111111-1111-1111-1111-111111111111")
        self.pass_time(TTL / 3 + 0.25)
        self.assertEqual(self.store.slots, set())
        self.assertFalse(a.start().mirrored)

    def test_the_slot_of_a_kernel_starting_elsewhere_is_kept(self) -> None:
        a = Replica(self, "a", max_kernels=2)
        claimed = a.replication.claim("22222222-2222-2222-2222-222222222222")
        self.settle()
        self.successResultOf(claimed)
        self.pass_time(TTL / 3 + 0.25)
        self.assertIn("22222222-2222-2222-2222-222222222222", self.store.slots)

    def test_a_dead_replicas_pool_kernel_is_shut_down_by_whoever_takes_it_over(self) -> None:
        """A prespawned kernel belongs to its replica's pool: taken over (even from a mirror), it is ended, not kept."""
        a, b = Replica(self, "a"), Replica(self, "b")
        started = a.kernels.start_kernel("python3", role=PRESPAWN)
        self.settle()
        kernel = self.successResultOf(started)
        mirror = b.find(kernel.kernel_id)
        fake = self.fake_of(kernel)
        a.crash()
        self.pass_time(TTL * 2)
        self.assertTrue(mirror.gone)
        self.assertTrue(fake.ended)
        self.assertEqual(self.store.records, {})

    def test_a_request_during_a_takeover_waits_for_it(self) -> None:
        """While B adopts a dead owner's kernel (a provisioner's reload takes time), a request for it on B waits
        for the adoption rather than answering that the kernel does not exist."""
        a, b = Replica(self, "a"), Replica(self, "b")
        kernel = a.start()
        fake = self.fake_of(kernel)
        gate: defer.Deferred[IRunningKernel] = defer.Deferred()
        b.adopt = lambda record: gate  # type: ignore[method-assign,assignment,return-value]
        a.crash()
        self.pass_time(TTL + TTL / 3 + 0.5)
        found = b.kernels.find(kernel.kernel_id)
        self.settle()
        self.assertNoResult(found)
        gate.callback(fake)
        self.settle()
        self.assertFalse(self.successResultOf(found).mirrored)
