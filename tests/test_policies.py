"""Which kernel policies the config turns on: seed hook, culler, prespawn pool and its readiness."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from kgd.gateway import Gateway
from kgd.kernels.culling import Culler
from kgd.kernels.prespawn import PrespawnPool
from kgd.kernels.kernels import Kernels
from kgd.options import default_config
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

    def gateway(self, **config: Any) -> Gateway:
        return Gateway(default_config(**config), self.kernels, self.specs, self.clock)

    def test_defaults_add_nothing(self) -> None:
        """By default: no seed hook, no culler, no pool."""
        gateway = self.gateway()
        install_kernel_policies(gateway)
        self.assertEqual((self.kernels.prepare_hooks, gateway.services), ([], []))
        self.assertIsNone(prespawn_pool(gateway))

    def test_culler_when_timeout_set(self) -> None:
        """A positive --cull-idle-timeout adds a Culler to the gateway's services."""
        gateway = self.gateway(cull_idle_timeout=10.0, cull_interval=0.0)
        install_kernel_policies(gateway)
        [culler] = gateway.services
        self.assertIsInstance(culler, Culler)
        self.assertEqual(culler.policy.effective_interval, 300)

    def test_seed_hook(self) -> None:
        """A seed URI adds a prepare hook (in jupyter-websocket mode only) and a bad one is a usage error."""
        gateway = self.gateway(seed_uri=os.path.join(RESOURCES, "zen.ipynb"))
        install_kernel_policies(gateway)
        self.assertEqual(len(self.kernels.prepare_hooks), 1)
        install_kernel_policies(self.gateway(seed_uri="/nonexistent.ipynb", api=["notebook-http"]))
        self.assertEqual(len(self.kernels.prepare_hooks), 1)
        error = self.assertRaises(UsageError, install_kernel_policies, self.gateway(seed_uri="/nonexistent.ipynb"))
        self.assertIn("--seed-uri: cannot read /nonexistent.ipynb", str(error))

    def test_prespawn_pool(self) -> None:
        """--prespawn-count makes one pool per gateway, started with its services and awaited by readiness."""
        gateway = self.gateway(prespawn_count=2)
        pool = prespawn_pool(gateway)
        self.assertIsInstance(pool, PrespawnPool)
        self.assertIs(prespawn_pool(gateway), pool)
        self.assertEqual((pool.size, gateway.services), (2, [pool]))
        self.assertIn("prespawn", gateway.readiness.pending())
