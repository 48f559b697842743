"""Kernels with a kernel store: records follow each kernel, stopping detaches, the next service adopts.

Fake kernel processes (``tests.kernels.fakes``) keep running across two
``Kernels`` services on one Clock, as real ones do across two daemons; the
store is the real file store in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from kgd.interfaces import IRunningKernel
from kgd.kernels.adoption import KernelAdopter, ProcessAdopter, record_of, stored_connection_info
from kgd.kernels.file_store import FileKernelStore
from kgd.kernels.kernels import USER, Kernels, UnknownKernel
from kgd.kernels.prespawn import PRESPAWN
from kgd.kernels.records import CannotAdopt, KernelRecord, LocalProcess, ProvisionerState
from tests.kernels.fakes import FAKE_HOST, FakeRunningKernel, fake_machine


class AdoptionTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        machine = fake_machine(self.mktemp())
        self.clock, self.sockets, self.launcher, self.specs = machine.clock, machine.sockets, machine.launcher, machine.specs
        self.kernels_dir = machine.kernels_dir
        self.clock.advance(1_800_000_000)
        self.store = FileKernelStore(os.path.abspath(self.mktemp()))
        self.refused: dict[str, str] = {}

    def adopt_fake(self, record: KernelRecord) -> IRunningKernel:
        """The surviving fake process a record names (what ProcessAdopter does for real processes)."""
        if record.kernel_id in self.refused:
            raise CannotAdopt(self.refused[record.kernel_id])
        for fake in self.launcher.alive():
            if record.process is not None and fake.pid == record.process.pid:
                return fake
        raise CannotAdopt("its process is gone")

    def no_provisioner(self, record: KernelRecord, spec: Any) -> defer.Deferred[IRunningKernel]:
        return defer.fail(CannotAdopt("no provisioner here"))

    def make(self, **kwargs: Any) -> Kernels:
        kwargs.setdefault("detach_on_stop", True)
        kernels = Kernels(
            self.specs, self.launcher, self.sockets, self.clock,
            store=self.store, record_of=record_of, adopt_process=KernelAdopter(self.adopt_fake, self.no_provisioner),
            adopt_timeout=5, **kwargs,
        )
        kernels.startService()
        self.settle()
        return kernels

    def settle(self) -> None:
        for _ in range(20):
            self.clock.advance(0)

    def start(self, kernels: Kernels, **kwargs: Any) -> Any:
        d = kernels.start_kernel(**kwargs)
        self.settle()
        return self.successResultOf(d)

    def shutdown(self, kernels: Kernels, kernel_id: str) -> None:
        d = kernels.shutdown_kernel(kernel_id)
        self.settle()
        self.successResultOf(d)

    def stop(self, kernels: Kernels) -> None:
        d = kernels.stopService()
        self.clock.advance(10)
        self.settle()
        self.successResultOf(d)

    def recorded(self) -> dict[str, KernelRecord]:
        return {r.kernel_id: r for r in self.successResultOf(self.store.load_all())}


class RecordTests(AdoptionTestCase):
    def test_records_follow_the_kernel(self) -> None:
        """Recorded at launch with its process; a restart records the new pid; a shutdown forgets it."""
        kernels = self.make()
        kernel = self.start(kernels)
        record = self.recorded()[kernel.kernel_id]
        self.assertEqual((record.process.pid, record.process.host), (self.launcher.kernels[0].pid, FAKE_HOST))
        self.assertEqual(record.connection_info, self.launcher.kernels[0].connection_info)
        self.assertEqual(record.role, USER)
        d = kernel.restart()
        self.settle()
        self.successResultOf(d)
        self.assertEqual(self.recorded()[kernel.kernel_id].process.pid, self.launcher.kernels[1].pid)
        self.shutdown(kernels, kernel.kernel_id)
        self.assertEqual(self.recorded(), {})
        self.stop(kernels)

    def test_failed_start_leaves_no_record(self) -> None:
        """A kernel that never answers is stopped and its record removed."""
        self.launcher.behaviour = {"answers_kernel_info": False}
        kernels = self.make(start_timeout=3)
        d = kernels.start_kernel()
        self.clock.advance(20)
        self.settle()
        self.failureResultOf(d)
        self.assertEqual(self.recorded(), {})
        self.stop(kernels)


class DetachTests(AdoptionTestCase):
    def test_stop_leaves_users_kernels_running_and_ends_pools(self) -> None:
        """Detaching: a user's kernel keeps running with its record; a pool's kernel is shut down and forgotten."""
        kernels = self.make()
        user = self.start(kernels)
        pooled = self.start(kernels, role=PRESPAWN)
        self.stop(kernels)
        user_fake, pooled_fake = self.launcher.kernels
        self.assertFalse(user_fake.ended)
        self.assertEqual(user_fake.signals, [])
        self.assertTrue(pooled_fake.ended)
        self.assertEqual(list(self.recorded()), [user.kernel_id])
        self.assertTrue(user.gone)  # this daemon no longer answers for it
        self.assertNotIn(pooled.kernel_id, self.recorded())

    def test_without_detach_stop_shuts_everything_down(self) -> None:
        """--on-stop shutdown with a store: every kernel ends and no record remains."""
        kernels = self.make(detach_on_stop=False)
        self.start(kernels)
        self.stop(kernels)
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(self.recorded(), {})


class AdoptTests(AdoptionTestCase):
    def detached_kernel(self) -> tuple[str, float]:
        first = self.make()
        kernel = self.start(first)
        self.clock.advance(30)
        kernel.activity.touch()
        last_activity = kernel.last_activity.timestamp()
        self.stop(first)
        self.clock.advance(600)
        return kernel.kernel_id, last_activity

    def test_next_service_adopts_before_ready(self) -> None:
        """The next service lists the kernel under its id and last activity once it answered kernel_info."""
        kernel_id, last_activity = self.detached_kernel()
        second = self.make()
        self.successResultOf(second.adopted())
        kernel = second.get(kernel_id)
        self.assertEqual(kernel.execution_state, "idle")
        self.assertEqual(kernel.last_activity.timestamp(), last_activity)
        self.assertIs(kernel.running, self.launcher.kernels[0])
        self.assertEqual(second.role(kernel), USER)
        # Adopted kernels are like any other: shutting one down ends the process.
        self.shutdown(second, kernel_id)
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(self.recorded(), {})

    def test_restart_count_survives_the_daemon(self) -> None:
        """Restarts are counted in the record and the count goes on in the next daemon."""
        first = self.make()
        kernel = self.start(first)
        for _ in range(2):
            d = kernel.restart()
            self.settle()
            self.successResultOf(d)
        self.assertEqual(self.recorded()[kernel.kernel_id].restart_count, 2)
        self.stop(first)
        second = self.make()
        self.successResultOf(second.adopted())
        d = second.get(kernel.kernel_id).restart()
        self.settle()
        self.successResultOf(d)
        self.assertEqual(self.recorded()[kernel.kernel_id].restart_count, 3)
        self.stop(second)

    def test_process_gone_or_not_ours_is_lost(self) -> None:
        """A record whose process cannot be adopted is forgotten, and nothing is signalled."""
        kernel_id, _ = self.detached_kernel()
        self.refused[kernel_id] = "pid 1001 now belongs to another process"
        second = self.make()
        self.successResultOf(second.adopted())
        self.assertRaises(UnknownKernel, second.get, kernel_id)
        self.assertEqual(self.recorded(), {})
        self.assertEqual(self.launcher.kernels[0].signals, [])

    def test_silent_kernel_is_lost_and_stopped(self) -> None:
        """A kernel that does not answer kernel_info within the deadline is forgotten and its process ended."""
        kernel_id, _ = self.detached_kernel()
        FakeRunningKernel.answers_kernel_info = False
        self.addCleanup(setattr, FakeRunningKernel, "answers_kernel_info", True)
        second = self.make()
        adopted = second.adopted()
        self.assertNoResult(adopted)
        self.assertEqual([k.kernel_id for k in second.list()], [kernel_id])  # listed while it is checked
        self.clock.advance(5)
        self.settle()
        self.successResultOf(adopted)
        self.assertRaises(UnknownKernel, second.get, kernel_id)
        self.assertTrue(self.launcher.kernels[0].ended)
        self.assertEqual(self.recorded(), {})

    def test_kernel_whose_kernelspec_vanished_is_stopped_not_left_running(self) -> None:
        """Its kernelspec removed while no daemon ran: the kernel is reached, shut down and forgotten, never left unowned."""
        first = self.make()
        kernel_id = self.start(first, name="other").kernel_id
        self.stop(first)
        shutil.rmtree(os.path.join(self.kernels_dir, "other"))
        second = self.make()
        self.successResultOf(second.adopted())
        self.assertRaises(UnknownKernel, second.get, kernel_id)
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(self.launcher.kernels[0].shutdowns_requested, [False])
        self.assertEqual(self.recorded(), {})

    def test_last_activity_survives_a_crash(self) -> None:
        """Activity reaches the store within 30 s without any stop, so a SIGKILLed daemon's successor sees it."""
        first = self.make()
        kernel = self.start(first)
        self.clock.advance(100)
        kernel.activity.touch()
        active_at = kernel.last_activity.timestamp()
        self.clock.advance(30)
        self.assertEqual(self.recorded()[kernel.kernel_id].last_activity, active_at)
        second = self.make()  # the first never stopped: as after SIGKILL
        self.successResultOf(second.adopted())
        self.assertEqual(second.get(kernel.kernel_id).last_activity.timestamp(), active_at)
        self.stop(second)

    def test_pool_kernels_left_by_a_crash_are_shut_down(self) -> None:
        """A prespawned kernel recorded by a daemon that was killed: adopted, then shut down (its pool refills)."""
        first = self.make()
        pooled = self.start(first, role=PRESPAWN)
        second = self.make()  # the first never stopped: as after SIGKILL
        self.successResultOf(second.adopted())
        self.assertRaises(UnknownKernel, second.get, pooled.kernel_id)
        self.assertTrue(self.launcher.kernels[0].ended)
        self.assertEqual(self.recorded(), {})


class ProcessAdopterTests(SynchronousTestCase):
    def test_checks_host_life_and_identity(self) -> None:
        """Only a record of this host whose pid still has the recorded start time is adopted."""
        machine = fake_machine(self.mktemp())
        fake = machine.launcher.launch("k", "python3", None, {}, "/")
        running = self.successResultOf(fake)
        record = KernelRecord("k", "python3", running.connection_info, {}, "/", 0.0, 0.0, process=running.process)
        start_times = {running.pid: running.process.start_time}
        watched: list[int] = []

        def watch(pid: int, start_time: int) -> defer.Deferred[None]:
            watched.append(pid)
            return defer.Deferred()

        def adopter(host: str) -> ProcessAdopter:
            return ProcessAdopter(host, watch, start_time_of=start_times.get)

        with self.assertRaises(CannotAdopt) as other_host:
            adopter("elsewhere")(record)
        self.assertIn("runs on host 'fakehost'", str(other_host.exception))
        adopted = adopter(FAKE_HOST)(record)
        self.assertEqual((adopted.pid, watched), (running.pid, [running.pid]))
        start_times[running.pid] += 1
        self.assertIn("now belongs to another process", str(self.assertRaises(CannotAdopt, adopter(FAKE_HOST), record)))
        del start_times[running.pid]
        self.assertIn("is gone", str(self.assertRaises(CannotAdopt, adopter(FAKE_HOST), record)))


class KernelAdopterTests(SynchronousTestCase):
    def test_each_record_goes_to_the_adopter_of_its_kind(self) -> None:
        """A local kernel's record is checked as a process; a provisioned one goes back to its provisioner; refusals fail the Deferred."""
        local = KernelRecord("local", "python3", {}, {}, "/", 0.0, 0.0)
        remote = local.with_changes(kernel_id="remote", provisioner=ProvisionerState("distributed-provisioner", {"pid": 7}))
        seen: list[tuple[str, str]] = []

        def processes(record: KernelRecord) -> Any:
            seen.append(("process", record.kernel_id))
            raise CannotAdopt("its process is gone")

        def provisioned(record: KernelRecord, spec: Any) -> defer.Deferred[Any]:
            seen.append(("provisioner", record.kernel_id))
            return defer.succeed(spec)

        adopter = KernelAdopter(processes, provisioned)
        self.failureResultOf(adopter(local, "spec"), CannotAdopt)
        self.assertEqual(self.successResultOf(adopter(remote, "spec")), "spec")
        self.assertEqual(seen, [("process", "local"), ("provisioner", "remote")])


class StoredConnectionInfoTests(SynchronousTestCase):
    def test_a_provisioners_bytes_key_is_stored_as_text(self) -> None:
        """Provisioners give the key as bytes; the record keeps the same key as JSON text, other fields untouched."""
        stored = stored_connection_info({"key": b"abc123", "shell_port": 5, "ip": "10.0.0.7"})
        self.assertEqual(stored, {"key": "abc123", "shell_port": 5, "ip": "10.0.0.7"})


class ConnectionFileTests(SynchronousTestCase):
    def test_connection_files_of_lost_and_ended_kernels_are_removed(self) -> None:
        """A kernel that cannot be adopted loses its connection file (it holds the key) at once; an adopted one when it is cleaned up."""
        runtime = self.mktemp()
        os.makedirs(runtime)
        process = LocalProcess(pid=4242, pgid=4242, start_time=7, host=FAKE_HOST)
        start_times = {4242: 7}
        adopter = ProcessAdopter(FAKE_HOST, lambda pid, start: defer.Deferred(), runtime_dir=runtime, start_time_of=start_times.get)
        for kernel_id in ("kept", "lost"):
            with open(os.path.join(runtime, f"kernel-{kernel_id}.json"), "w") as f:
                f.write("{}")
        adopted = adopter(KernelRecord("kept", "python3", {}, {}, "/", 0.0, 0.0, process=process))
        del start_times[4242]
        self.assertRaises(CannotAdopt, adopter, KernelRecord("lost", "python3", {}, {}, "/", 0.0, 0.0, process=process))
        self.assertEqual(os.listdir(runtime), ["kernel-kept.json"])
        adopted.cleanup()
        self.assertEqual(os.listdir(runtime), [])
