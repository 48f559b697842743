"""Idle-kernel culling: the pure rule, and the Culler service driven by a Clock over fake kernels."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.culling import CullPolicy, Culler, is_cullable
from kgd.kernels.kernel import Kernel
from kgd.kernels.kernels import USER
from kgd.kernels.prespawn import PRESPAWN
from tests.kernels.fakes import write_kernelspec
from kgd.kernels import messages
from tests.kernels.test_prespawn import KernelsCase

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


class StubKernel:
    """Just the attributes the culling rule reads."""

    def __init__(self, state: str = "idle", idle: float = 0.0, connections: int = 0, metadata: dict | None = None) -> None:
        self.execution_state = state
        self.last_activity = NOW - timedelta(seconds=idle)
        self.connections = connections
        self.spec = type("Spec", (), {"metadata": metadata or {}})()


class RuleTests(SynchronousTestCase):
    """``is_cullable`` follows Jupyter Server's rules."""

    def test_idle_beyond_timeout(self) -> None:
        """An idle, unconnected kernel is culled only once inactive for longer than the timeout."""
        policy = CullPolicy(idle_timeout=60)
        self.assertIsNone(is_cullable(policy, StubKernel(idle=60), NOW))
        self.assertEqual(is_cullable(policy, StubKernel(idle=61), NOW), "idle")

    def test_off_by_default(self) -> None:
        """With timeout 0 (the default) nothing idle is culled."""
        self.assertFalse(CullPolicy().enabled)
        self.assertIsNone(is_cullable(CullPolicy(), StubKernel(idle=10**6), NOW))

    def test_dead_always_culled(self) -> None:
        """A dead kernel is culled at every pass whatever its activity."""
        self.assertEqual(is_cullable(CullPolicy(idle_timeout=60), StubKernel("dead", idle=0), NOW), "dead")

    def test_busy_and_connected(self) -> None:
        """Busy or connected kernels are kept unless --cull-busy / --cull-connected say otherwise."""
        busy, connected = StubKernel("busy", idle=100), StubKernel(idle=100, connections=2)
        self.assertIsNone(is_cullable(CullPolicy(idle_timeout=60), busy, NOW))
        self.assertIsNone(is_cullable(CullPolicy(idle_timeout=60), connected, NOW))
        self.assertEqual(is_cullable(CullPolicy(idle_timeout=60, busy=True), busy, NOW), "idle")
        self.assertEqual(is_cullable(CullPolicy(idle_timeout=60, connected=True), connected, NOW), "idle")

    def test_kernelspec_override(self) -> None:
        """A kernelspec's ``metadata.cull_idle_timeout`` replaces the timeout for its kernels."""
        policy = CullPolicy(idle_timeout=60)
        self.assertEqual(is_cullable(policy, StubKernel(idle=11, metadata={"cull_idle_timeout": 10}), NOW), "idle")
        self.assertIsNone(is_cullable(policy, StubKernel(idle=100, metadata={"cull_idle_timeout": 1000}), NOW))

    def test_interval(self) -> None:
        """A non-positive interval means 300 seconds, as in Jupyter Server."""
        self.assertEqual(CullPolicy(idle_timeout=1, interval=0).effective_interval, 300)
        self.assertEqual(CullPolicy(idle_timeout=1, interval=5).effective_interval, 5)


class CullerTests(KernelsCase):
    """The Culler shuts kernels down on its interval, as the Clock advances."""

    def setUp(self) -> None:
        super().setUp()
        self.kernels = self.make_kernels()

    def start(self, name: str | None = None, role: str = USER) -> Kernel:
        d = self.kernels.start_kernel(name, role=role)
        self.settle()
        return self.successResultOf(d)

    def make_culler(self, **policy: Any) -> Culler:
        culler = Culler(self.kernels, CullPolicy(**policy), self.clock)
        culler.startService()
        self.addCleanup(culler.stopService)
        return culler

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()
        self.clock.advance(10)  # let shutdowns finish

    def test_idle_kernel_culled_on_interval(self) -> None:
        """With timeout 30 and interval 10, an untouched kernel survives the 30 s mark and is gone at 40 s."""
        self.make_culler(idle_timeout=30, interval=10)
        kernel = self.start()
        self.clock.advance(30)
        self.settle()
        self.assertIn(kernel, self.kernels.list())
        self.clock.advance(10)
        self.settle()
        self.clock.advance(10)
        self.assertEqual(self.kernels.list(), [])
        self.assertEqual(self.launcher.alive(), [])

    def test_activity_keeps_a_kernel(self) -> None:
        """A kernel whose activity is recent is kept while an idle one is culled."""
        self.make_culler(idle_timeout=30, interval=10)
        active, idle = self.start(), self.start()
        client = active.client(lambda channel, message: None)
        for _ in range(5):
            self.clock.advance(10)
            client.send("shell", messages.new_message("execute_request", {"code": "1"}, session="s"))
            self.settle()
        self.clock.advance(10)
        self.assertEqual(self.kernels.list(), [active])
        self.assertTrue(idle.gone)

    def test_connected_kernel_kept_unless_asked(self) -> None:
        """A kernel with a connection is not culled by default."""
        self.make_culler(idle_timeout=5, interval=5)
        kernel = self.start()
        kernel.activity.connected()
        self.advance(20)
        self.assertEqual(self.kernels.list(), [kernel])

    def test_cull_connected(self) -> None:
        """With --cull-connected an idle connected kernel is culled too."""
        self.make_culler(idle_timeout=5, interval=5, connected=True)
        kernel = self.start()
        kernel.activity.connected()
        self.advance(20)
        self.assertTrue(kernel.gone)

    def test_disabled(self) -> None:
        """With no timeout the culler never runs."""
        self.make_culler(idle_timeout=0, interval=1)
        kernel = self.start()
        self.advance(10_000)
        self.assertEqual(self.kernels.list(), [kernel])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_exempt_kernels(self) -> None:
        """Kernels the pool holds (a role other than the user's) are never culled."""
        self.make_culler(idle_timeout=5, interval=5)
        kept, culled = self.start(role=PRESPAWN), self.start()
        self.advance(20)
        self.assertEqual(self.kernels.list(), [kept])
        self.assertTrue(culled.gone)

    def test_stop_stops_the_loop(self) -> None:
        """Stopping the service leaves no scheduled check behind."""
        culler = self.make_culler(idle_timeout=5, interval=5)
        culler.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_kernelspec_override_applies(self) -> None:
        """A kernelspec with its own ``cull_idle_timeout`` is culled on that timeout."""
        import json
        import os

        directory = write_kernelspec(self.specs_dir, "quick")
        with open(os.path.join(directory, "kernel.json")) as f:
            spec = json.load(f)
        spec["metadata"] = {"cull_idle_timeout": 1}
        with open(os.path.join(directory, "kernel.json"), "w") as f:
            json.dump(spec, f)
        self.make_culler(idle_timeout=1000, interval=5)
        quick, normal = self.start("quick"), self.start()
        self.advance(10)
        self.assertTrue(quick.gone)
        self.assertEqual(self.kernels.list(), [normal])
