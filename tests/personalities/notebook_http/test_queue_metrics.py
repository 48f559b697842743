"""notebook-http reports its queue depth to the daemon's metrics."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from kgd.gateway import Gateway
from kgd.kernels.specs import KernelSpecs
from kgd.options import default_config
from kgd.personalities.notebook_http.api import build_api
from kgd.personalities.notebook_http.personality import NotebookHttpPersonality
from kgd.service import personality_settings
from tests.integration.daemon import RESOURCES


class StartingKernels:
    """Kernels that never finish starting, so requests queue for the pool."""

    force_name = ""

    def __init__(self) -> None:
        self.starts: list[defer.Deferred[Any]] = []

    def start_kernel(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        self.starts.append(defer.Deferred())
        return self.starts[-1]


class QueueDepthTests(unittest.TestCase):
    """kgd_notebook_http_queue_depth follows the requests waiting for a pool kernel."""

    def test_queue_depth_gauge(self) -> None:
        """Each request queued while the pool's kernel is starting counts; leaving the queue uncounts."""
        config = default_config(api=["notebook-http"], seed_uri=os.path.join(RESOURCES, "kernel_api.ipynb"))
        gateway = Gateway(StartingKernels(), KernelSpecs(), Clock())  # type: ignore[arg-type]
        build_api(personality_settings(NotebookHttpPersonality(), config), gateway)
        (pool,) = gateway.services
        pool.startService()
        self.addCleanup(pool.stopService)
        depth = lambda: gateway.metrics.registry.get_sample_value("kgd_notebook_http_queue_depth")  # noqa: E731
        self.assertEqual(depth(), 0)
        first, second = pool.acquire(), pool.acquire()
        self.assertEqual(depth(), 2)
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        self.assertEqual(depth(), 1)
        second.cancel()
        self.failureResultOf(second, defer.CancelledError)
