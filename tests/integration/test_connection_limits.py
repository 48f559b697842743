"""Connection limits against the real daemon: refusals are 503s before any upgrade, never a silent 101."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.daemon import Client, Daemon, poll_until
from tests.integration.ws import connect

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


class ConnectionLimitTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def started(self, *args: str, wrapper: tuple[str, ...] = ()) -> Any:
        daemon = Daemon(list(args), wrapper=wrapper)
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)
        status, _, body = yield client.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201, body)
        return daemon, client, body["id"]

    @defer.inlineCallbacks
    def fill_then_refuse(self, daemon: Daemon, client: Client, kernel_id: str, limit: int) -> Any:
        """Open ``limit`` WebSockets; the next upgrade is a 503 with a reason; closing one admits a new one."""
        open_ones = []
        for _ in range(limit):
            open_ones.append((yield connect(daemon.ws_url, kernel_id)))
        status, headers, body = yield client.request("GET", f"/api/kernels/{kernel_id}/channels", headers=UPGRADE)
        self.assertEqual(status, 503)
        self.assertIn(f"at most {limit} WebSocket connections", body["message"])
        status, _, _ = yield client.request("GET", "/healthz")
        self.assertEqual(status, 200)
        out = yield open_ones[0].execute("print('still served')")
        self.assertIn("still served", "".join(m["content"].get("text", "") for m in out))
        yield open_ones.pop().close()
        admitted = yield poll_until(
            lambda: connect(daemon.ws_url, kernel_id).addErrback(lambda failure: None), timeout=30
        )
        open_ones.append(admitted)
        _, _, metrics = yield client.request("GET", "/metrics")
        self.assertIn(b'kgd_connections_refused_total{reason="max_connections"} 1.0', metrics)
        for ws in open_ones:
            yield ws.close()

    @defer.inlineCallbacks
    def test_max_connections(self) -> None:
        """--max-connections 2: the third upgrade is refused with 503, the daemon keeps serving the two."""
        daemon, client, kernel_id = yield self.started("--max-connections", "2")
        yield self.fill_then_refuse(daemon, client, kernel_id, 2)

    @defer.inlineCallbacks
    def test_low_open_files_limit(self) -> None:
        """With 300 open files the daemon states what it can carry and refuses cleanly beyond it."""
        daemon, client, kernel_id = yield self.started(wrapper=("prlimit", "--nofile=300:300", "--"))
        limit = int(re.search(rb"open files limit 300 .*at most (\d+) channels WebSockets", daemon.log).group(1))
        self.assertGreater(limit, 0)
        yield self.fill_then_refuse(daemon, client, kernel_id, limit)
