"""Connection limits against the real daemon: refusals are 503s before any upgrade, never a silent 101."""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.daemon import Client, Daemon, daemon_with_kernel, poll_until
from tests.integration import ws
from tests.integration.ws import connect

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


class ConnectionLimitTests(unittest.TestCase):
    timeout = 120

    def started(self, *args: str, wrapper: tuple[str, ...] = ()) -> Any:
        return daemon_with_kernel(self, list(args), wrapper=wrapper)

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
        for connection in open_ones:
            yield connection.close()

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


def open_sockets(pid: int) -> int:
    """How many sockets a process holds (its descriptors that are sockets)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


class SharedSocketsTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def test_many_connections_share_the_kernels_sockets_and_keep_their_replies(self) -> None:
        """60 WebSockets on one real kernel: each gets its own execute_reply and input_request only; each costs one socket."""
        daemon, _, kernel_id = yield daemon_with_kernel(self, [])
        first = yield connect(daemon.ws_url, kernel_id)
        yield first.execute("pass")
        before = open_sockets(daemon.transport.pid)
        connections = []
        for n in range(60):
            connections.append((yield connect(daemon.ws_url, kernel_id, session_id=f"s{n}")))
        self.assertLessEqual(open_sockets(daemon.transport.pid) - before, 60 + 5, "one socket per WebSocket, no ZeroMQ ones")

        sent = [ws.execute_request(f"print({n})") for n in range(60)]
        for connection, request in zip(connections, sent):
            connection.send(request)
        for connection, request in zip(connections, sent):
            yield connection.wait_for(ws.finished(request), timeout=90, since=0)
        for n, (connection, request) in enumerate(zip(connections, sent)):
            replies = [m for m in connection.messages if m["msg_type"] == "execute_reply"]
            self.assertEqual([m["parent_header"]["msg_id"] for m in replies], [request["header"]["msg_id"]], f"connection {n}")

        asking = ws.execute_request("input('name? ')")
        connections[7].send(asking)
        prompt = yield connections[7].wait_for(ws.of_type("input_request", "stdin"), timeout=60)
        self.assertEqual(prompt[-1]["content"]["prompt"], "name? ")
        reply = ws.request("input_reply", {"value": "kgd"}, channel="stdin")
        reply["parent_header"] = prompt[-1]["header"]
        connections[7].send(reply)
        yield connections[7].wait_for(ws.finished(asking), timeout=60)
        others = [c for i, c in enumerate(connections) if i != 7]
        self.assertFalse(any(m["msg_type"] == "input_request" for c in others for m in c.messages))
        for connection in [first, *connections]:
            yield connection.close()
