"""Tests for kgd.kernels.kernels.Kernels: the set of kernels as a Service.

Kernels run in memory (``tests.kernels.fakes``) with kernelspecs written to
a temporary directory; a Clock stands in for the reactor.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.kernel import KernelGone, KernelStartError
from kgd.kernels.kernel_request import InvalidKernelRequest
from kgd.kernels.kernels import USER, KernelLimitReached, Kernels, UnknownKernel
from kgd.kernels.specs import UnknownKernelSpec
from tests.kernels.fakes import fake_machine


class KernelsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        machine = fake_machine(self.mktemp())
        self.clock, self.sockets, self.launcher, self.specs = machine.clock, machine.sockets, machine.launcher, machine.specs

    def make(self, **kwargs) -> Kernels:
        kwargs.setdefault("daemon_env", {"PATH": "/bin", "KG_AUTH_TOKEN": "secret", "HOME": "/h"})
        kernels = Kernels(self.specs, self.launcher, self.sockets, self.clock, **kwargs)
        kernels.startService()
        self.addCleanup(self._stop, kernels)
        return kernels

    def _stop(self, kernels: Kernels) -> None:
        if kernels.running:
            d = kernels.stopService()
            self.clock.advance(10)
            self.successResultOf(d)

    def start(self, kernels: Kernels, **kwargs):
        d = kernels.start_kernel(**kwargs)
        self.clock.advance(0)
        return self.successResultOf(d)


class StartTests(KernelsTestCase):
    def test_start_default_kernel(self) -> None:
        """start_kernel without a name starts the default kernelspec and the kernel can then be found by id."""
        kernels = self.make()
        kernel = self.start(kernels)
        self.assertEqual(kernel.spec_name, "python3")
        self.assertIs(kernels.get(kernel.kernel_id), kernel)
        self.assertEqual(kernels.list(), [kernel])
        self.assertEqual(str(uuid.UUID(kernel.kernel_id)), kernel.kernel_id)

    def test_environment_and_cwd(self) -> None:
        """A kernel never inherits the daemon's KG_ settings; the request's path picks its directory."""
        kernels = self.make(root_dir="/")
        self.start(kernels, path="tmp/notebook.ipynb")
        launch = self.launcher.launches[0]
        self.assertNotIn("KG_AUTH_TOKEN", launch["env"])
        self.assertEqual(launch["env"]["HOME"], "/h")
        self.assertEqual(launch["env"]["KERNEL_GATEWAY"], "1")
        self.assertEqual(launch["cwd"], "/tmp")

    def test_unknown_kernelspec(self) -> None:
        """Asking for a kernelspec that is not installed fails with UnknownKernelSpec and launches nothing."""
        kernels = self.make()
        self.failureResultOf(kernels.start_kernel("nope"), UnknownKernelSpec)
        self.assertEqual(self.launcher.launches, [])
        self.assertEqual(kernels.alive_count(), 0)

    def test_force_name(self) -> None:
        """force_name overrides whatever kernelspec the request names."""
        kernels = self.make(force_name="other")
        self.assertEqual(self.start(kernels, name="python3").spec_name, "other")
        self.assertEqual(self.start(kernels).spec_name, "other")

    def test_kernel_id_reuse(self) -> None:
        """A kernel_id of a running kernel returns that kernel; a new UUID is used as the id; a non-UUID is refused."""
        kernels = self.make()
        wanted = str(uuid.uuid4())
        kernel = self.start(kernels, kernel_id=wanted)
        self.assertEqual(kernel.kernel_id, wanted)
        self.assertIs(self.start(kernels, kernel_id=wanted), kernel)
        self.assertEqual(len(self.launcher.launches), 1)
        self.failureResultOf(kernels.start_kernel(kernel_id="not-a-uuid"), InvalidKernelRequest)

    def test_same_kernel_id_while_starting(self) -> None:
        """A second start with the id of a kernel that is still starting is refused, not started twice."""
        kernels = self.make()
        wanted = str(uuid.uuid4())
        first = kernels.start_kernel(kernel_id=wanted)
        self.failureResultOf(kernels.start_kernel(kernel_id=wanted), InvalidKernelRequest)
        self.clock.advance(0)
        self.successResultOf(first)
        self.assertEqual(len(self.launcher.launches), 1)

    def test_failed_start_is_forgotten(self) -> None:
        """A kernel that fails to start is not listed, does not count toward the limit, and leaves no process."""
        kernels = self.make(max_kernels=1, start_timeout=5)
        self.launcher.behaviour = {"answers_kernel_info": False}
        d = kernels.start_kernel()
        self.clock.advance(5)
        self.failureResultOf(d, KernelStartError)
        self.assertEqual(kernels.list(), [])
        self.assertEqual(kernels.alive_count(), 0)
        self.assertEqual(self.launcher.alive(), [])
        self.launcher.behaviour = {}
        self.start(kernels)

    def test_prepare_hooks(self) -> None:
        """Prepare hooks run on a new kernel before start_kernel hands it out; a failing hook fails the start."""
        kernels = self.make()
        prepared = []
        kernels.prepare_hooks.append(prepared.append)
        kernel = self.start(kernels)
        self.assertEqual(prepared, [kernel])

        def broken(kernel):
            raise RuntimeError("seed failed")

        kernels.prepare_hooks.append(broken)
        d = kernels.start_kernel()
        self.clock.advance(10)
        failure = self.failureResultOf(d, KernelStartError)
        self.assertIn("seed failed", str(failure.value))
        self.assertEqual(len(kernels.list()), 1)
        self.assertEqual(len(self.launcher.alive()), 1)


class LimitTests(KernelsTestCase):
    def test_max_kernels_counts_starting(self) -> None:
        """Concurrent starts cannot exceed max_kernels: kernels still starting count toward it."""
        kernels = self.make(max_kernels=2)
        first, second = kernels.start_kernel(), kernels.start_kernel()
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.failureResultOf(kernels.start_kernel(), KernelLimitReached)
        self.clock.advance(0)
        self.successResultOf(first)
        self.successResultOf(second)
        self.failureResultOf(kernels.start_kernel(), KernelLimitReached)
        self.assertEqual(len(self.launcher.launches), 2)

    def test_limit_frees_after_shutdown(self) -> None:
        """Shutting a kernel down makes room for another."""
        kernels = self.make(max_kernels=1)
        kernel = self.start(kernels)
        d = kernels.shutdown_kernel(kernel.kernel_id)
        self.clock.advance(0)
        self.successResultOf(d)
        self.start(kernels)


class ShutdownTests(KernelsTestCase):
    def test_shutdown_kernel(self) -> None:
        """shutdown_kernel ends the kernel and forgets it; its id is then unknown."""
        kernels = self.make()
        kernel = self.start(kernels)
        d = kernels.shutdown_kernel(kernel.kernel_id)
        self.assertRaises(UnknownKernel, kernels.get, kernel.kernel_id)
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(kernels.list(), [])
        self.assertEqual(self.launcher.alive(), [])
        self.failureResultOf(kernels.shutdown_kernel(kernel.kernel_id), UnknownKernel)

    def test_unknown_kernel(self) -> None:
        """Looking up or shutting down an unknown id fails with UnknownKernel naming it."""
        kernels = self.make()
        error = self.assertRaises(UnknownKernel, kernels.get, "missing")
        self.assertEqual(error.kernel_id, "missing")
        self.failureResultOf(kernels.shutdown_kernel("missing"), UnknownKernel)

    def test_stop_service_shuts_everything_down(self) -> None:
        """stopService shuts down running and still-starting kernels; the starting one's start fails."""
        kernels = self.make()
        running = self.start(kernels)
        self.launcher.behaviour = {"answers_kernel_info": False}
        starting = kernels.start_kernel()
        self.clock.advance(0)
        stopped = kernels.stopService()
        self.clock.advance(20)
        self.successResultOf(stopped)
        self.failureResultOf(starting, KernelStartError)
        self.assertEqual(self.launcher.alive(), [])
        self.assertTrue(running.gone)
        self.assertEqual(kernels.list(), [])
        self.assertEqual(kernels.alive_count(), 0)

    def test_dead_kernel_forgotten(self) -> None:
        """A kernel that keeps dying is declared dead and forgotten: no longer listed or found."""
        kernels = self.make()
        kernel = self.start(kernels)
        for _ in range(10):
            alive = self.launcher.alive()
            if not alive:
                break
            alive[0].end(1)
            self.clock.advance(0)
        self.assertEqual(kernel.execution_state, "dead")
        self.assertEqual(kernels.list(), [])
        self.assertRaises(UnknownKernel, kernels.get, kernel.kernel_id)
        self.assertEqual(kernels.alive_count(), 0)


class RoleTests(KernelsTestCase):
    """Who owns each kernel: the user who asked for it, or the pool that started it."""

    def test_roles(self) -> None:
        """A kernel is the user's unless started under a pool's role, which ``role`` reports by kernel or id."""
        kernels = self.make()
        asked = self.start(kernels)
        pooled = self.start(kernels, role="prespawn")
        self.assertEqual((kernels.role(asked), kernels.role(pooled.kernel_id)), (USER, "prespawn"))

    def test_hand_over(self) -> None:
        """``set_role`` gives a pool's kernel to its new owner."""
        kernels = self.make()
        kernel = self.start(kernels, role="prespawn")
        kernels.set_role(kernel, USER)
        self.assertEqual(kernels.role(kernel), USER)

    def test_role_forgotten_with_the_kernel(self) -> None:
        """Once a kernel is shut down, or never started, it has no role: ``UnknownKernel``."""
        kernels = self.make()
        kernel = self.start(kernels, role="prespawn")
        d = kernels.shutdown_kernel(kernel.kernel_id)
        self.clock.advance(10)
        self.successResultOf(d)
        self.assertRaises(UnknownKernel, kernels.role, kernel)
        self.failureResultOf(kernels.start_kernel("nope", role="prespawn"), UnknownKernelSpec)
        self.assertRaises(UnknownKernel, kernels.role, "no-such-id")


class RaceTests(KernelsTestCase):
    """Lifecycle operations against each other and against callers who stop waiting (issue 10's races)."""

    def slow_to_stop(self) -> None:
        """Kernels from now on ignore shutdown_request and SIGTERM: each stop takes the full escalation."""
        self.launcher.behaviour = {"exits_on_shutdown_request": False, "ends_on": frozenset()}

    def escalate(self) -> None:
        """Let a stop run through shutdown_request, TERM and KILL (5 s each) and what follows."""
        for _ in range(4):
            self.clock.advance(5)
            self.clock.advance(0)

    def test_restart_and_delete_together(self) -> None:
        """DELETE during a restart: the restart fails with KernelGone at once and no process is left."""
        self.slow_to_stop()
        kernels = self.make()
        kernel = self.start(kernels)
        restarting = kernel.restart()
        self.clock.advance(0)
        deleting = kernels.shutdown_kernel(kernel.kernel_id)
        self.escalate()
        self.successResultOf(deleting)
        self.failureResultOf(restarting, KernelGone)
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(kernels.list(), [])

    def test_caller_leaving_a_restart_does_not_stop_it(self) -> None:
        """The restart's caller cancels (its client disconnected): the kernel still restarts and is usable."""
        self.slow_to_stop()
        kernels = self.make()
        kernel = self.start(kernels)
        restarting = kernel.restart()
        self.clock.advance(1)
        restarting.cancel()
        self.failureResultOf(restarting, defer.CancelledError)
        self.escalate()
        self.assertEqual(kernel.execution_state, "idle")
        self.assertEqual([k.pid for k in self.launcher.alive()], [kernel.running.pid])
        self.assertEqual(kernels.list(), [kernel])
        stopping = kernels.stopService()
        self.escalate()
        self.successResultOf(stopping)

    def test_caller_leaving_a_shutdown_does_not_stop_it(self) -> None:
        """The DELETE's caller cancels while a busy kernel is being stopped: the process still ends, nothing is listed."""
        self.slow_to_stop()
        kernels = self.make()
        kernel = self.start(kernels)
        deleting = kernels.shutdown_kernel(kernel.kernel_id)
        self.clock.advance(1)
        deleting.cancel()
        self.failureResultOf(deleting, defer.CancelledError)
        self.escalate()
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(kernels.list(), [])

    def test_caller_leaving_a_start_does_not_stop_it(self) -> None:
        """POST's caller cancels during the start: the kernel comes up and is listed, nothing leaks."""
        kernels = self.make()
        starting = kernels.start_kernel()
        starting.cancel()
        self.failureResultOf(starting, defer.CancelledError)
        self.clock.advance(0)
        self.assertEqual(len(kernels.list()), 1)
        self.assertEqual([k.pid for k in self.launcher.alive()], [kernels.list()[0].running.pid])

    def test_start_with_the_id_of_a_kernel_being_deleted(self) -> None:
        """POST with the kernel_id of a kernel still shutting down starts a new one once the old one is gone."""
        self.slow_to_stop()
        kernels = self.make()
        old = self.start(kernels)
        kernels.shutdown_kernel(old.kernel_id)
        self.launcher.behaviour = {}
        starting = kernels.start_kernel(kernel_id=old.kernel_id)
        self.clock.advance(0)
        self.assertNoResult(starting)
        self.assertEqual(len(self.launcher.launches), 1)
        self.escalate()
        new = self.successResultOf(starting)
        self.assertEqual(new.kernel_id, old.kernel_id)
        self.assertIsNot(new, old)
        self.assertEqual([k.pid for k in self.launcher.alive()], [new.running.pid])
