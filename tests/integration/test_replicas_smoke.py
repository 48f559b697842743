"""The replica cluster fixture end to end: one kernel through the balancer, seen by every replica."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.daemon import pid_alive, poll_until
from tests.integration.replicas import Cluster, missing


class ClusterSmokeTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        self.cluster = Cluster(root, replicas=2, lease_ttl=3)
        self.addCleanup(self.cluster.stop)

    @defer.inlineCallbacks
    def test_kernel_through_the_balancer_is_served_by_every_replica(self) -> Any:
        """A kernel POSTed through HAProxy is listed by each replica directly; DELETE through HAProxy ends its process."""
        yield self.cluster.start()
        status, _, body = yield self.cluster.lb.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201, body)
        kernel_id = body["id"]
        pids = yield poll_until(self.cluster.kernel_pids, timeout=10)
        self.assertEqual(len(pids), 1, pids)
        for client in self.cluster.clients:
            status, _, model = yield client.request("GET", f"/api/kernels/{kernel_id}")
            self.assertEqual((status, model["id"]), (200, kernel_id), client.daemon.url)
        status, _, body = yield self.cluster.lb.request("DELETE", f"/api/kernels/{kernel_id}")
        self.assertEqual(status, 204, body)
        yield poll_until(lambda: not pid_alive(pids[0]), timeout=10)
        for client in self.cluster.clients:  # the other replica hears of the deletion through Redis
            yield poll_until(
                lambda c=client: c.request("GET", f"/api/kernels/{kernel_id}").addCallback(lambda r: r[0] == 404), timeout=10
            )
