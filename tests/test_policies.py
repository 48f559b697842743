"""Which kernel policies the settings turn on: seed hook, culler, prespawn pool and its readiness."""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from kgd.gateway import Gateway
from kgd.kernels.culling import Culler, CullPolicy
from kgd.kernels.prespawn import PrespawnPool
from kgd.kernels.kernels import Kernels
from kgd.policies import install_kernel_policies, prespawn_pool
from tests.integration.daemon import RESOURCES
from tests.kernels.fakes import FakeLauncher, FakeSockets, temporary_specs, write_kernelspec


class PolicyWiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        sockets = FakeSockets(self.clock)
        kernels_dir = self.mktemp()
        write_kernelspec(kernels_dir, "python3")
        self.specs = temporary_specs(kernels_dir)
        self.kernels = Kernels(self.specs, FakeLauncher(sockets), sockets, self.clock, daemon_env={})

    def gateway(self) -> Gateway:
        return Gateway(self.kernels, self.specs, self.clock)

    def test_defaults_add_nothing(self) -> None:
        """By default: no seed hook, no culler, no pool."""
        gateway = self.gateway()
        install_kernel_policies(gateway)
        self.assertEqual((self.kernels.prepare_hooks, gateway.services), ([], []))
        self.assertIsNone(prespawn_pool(gateway, None))

    def test_culler_when_timeout_set(self) -> None:
        """A positive --cull-idle-timeout adds a Culler to the gateway's services."""
        gateway = self.gateway()
        install_kernel_policies(gateway, cull=CullPolicy(idle_timeout=10.0, interval=0.0))
        [culler] = gateway.services
        self.assertIsInstance(culler, Culler)
        self.assertEqual(culler.policy.effective_interval, 300)

    def test_seed_hook(self) -> None:
        """A seed URI adds a prepare hook and a bad one is a usage error (which personalities seed is test_service's)."""
        gateway = self.gateway()
        install_kernel_policies(gateway, seed_uri=os.path.join(RESOURCES, "zen.ipynb"))
        self.assertEqual(len(self.kernels.prepare_hooks), 1)
        error = self.assertRaises(UsageError, install_kernel_policies, self.gateway(), seed_uri="/nonexistent.ipynb")
        self.assertIn("--seed-uri: cannot read /nonexistent.ipynb", str(error))

    def test_prespawn_pool(self) -> None:
        """--prespawn-count makes a pool of the seed's kernelspec, started with the gateway's services and awaited by readiness."""
        gateway = self.gateway()
        pool = prespawn_pool(gateway, 2)
        self.assertIsInstance(pool, PrespawnPool)
        self.assertEqual((pool.size, gateway.services), (2, [pool]))
        self.assertIn("prespawn", gateway.readiness.pending())
