"""Lifecycle races against the real daemon: clients that leave mid-operation, operations that cross.

A client that disconnects during a start, restart or DELETE must not leave a
kernel half-done: the operation finishes (or the kernel is gone), nothing is
logged as an unhandled error, and every kernel process belongs to a listed
kernel until the daemon stops, when none remains (``Daemon.stop`` checks).
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from tests.integration.daemon import Client, Daemon, pid_alive, poll_until
from tests.integration.ws import connect


class _SendAndLeave(protocol.Protocol):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def connectionMade(self) -> None:
        self.transport.write(self.data)


@defer.inlineCallbacks
def request_and_disconnect(daemon: Daemon, method: str, path: str, after_log: bytes) -> Any:
    """Send a request, then drop the connection once ``after_log`` shows the daemon is at work on it."""
    seen = daemon.log.count(after_log)
    body = b"{}" if method == "POST" else b""
    data = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sender = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.port), _SendAndLeave(data))
    yield poll_until(lambda: daemon.log.count(after_log) > seen)
    sender.transport.abortConnection()


class DisconnectTests(unittest.TestCase):
    timeout = 240

    @defer.inlineCallbacks
    def setUp(self) -> None:
        self.daemon = Daemon(["--list-kernels"])
        yield self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.client = Client(self.daemon)

    @defer.inlineCallbacks
    def listed(self) -> Any:
        _, _, kernels = yield self.client.request("GET", "/api/kernels")
        return kernels

    @defer.inlineCallbacks
    def executes(self, kernel_id: str) -> Any:
        ws = yield connect(self.daemon.ws_url, kernel_id)
        out = yield ws.execute("print(6 * 7)", timeout=60)
        yield ws.close()
        return "".join(m["content"].get("text", "") for m in out).strip() == "42"

    def live_kernel_pids(self) -> list[int]:
        return [pid for pid in self.daemon.kernel_pids if pid_alive(pid)]

    @defer.inlineCallbacks
    def check_invariants(self) -> Any:
        """Every listed kernel executes; every live kernel process is one the daemon lists (by count)."""
        yield poll_until(lambda: self.listed().addCallback(lambda ks: all(k["execution_state"] == "idle" for k in ks)), 90)
        kernels = yield self.listed()
        for kernel in kernels:
            self.assertTrue((yield self.executes(kernel["id"])))
        # A kernel whose DELETE's client left is still being stopped (request, TERM, KILL: up to
        # 10 s): wait for what is in flight to settle; a leaked process never does.
        yield poll_until(lambda: len(self.live_kernel_pids()) == len(kernels), timeout=60)
        self.assertEqual(len((yield self.listed())), len(kernels))
        self.assertNotIn(b"Unhandled Error", self.daemon.log)

    @defer.inlineCallbacks
    def test_clients_leaving_mid_operation(self) -> None:
        """Disconnects during POST, restart and DELETE of a busy kernel leave every kernel usable or gone."""
        yield request_and_disconnect(self.daemon, "POST", "/api/kernels", b"launched as pid")
        yield poll_until(lambda: self.listed().addCallback(len))
        kernel_id = (yield self.listed())[0]["id"]
        yield request_and_disconnect(self.daemon, "POST", f"/api/kernels/{kernel_id}/restart", b"launched as pid")
        yield self.check_invariants()

        ws = yield connect(self.daemon.ws_url, kernel_id)
        busy = ws.execute("while True: pass", timeout=120)
        busy.addErrback(lambda failure: failure.trap(ConnectionError))  # the kernel goes away under it
        yield ws.wait_for(lambda m: m["header"]["msg_type"] == "execute_input")
        pids = list(self.daemon.kernel_pids)
        yield request_and_disconnect(self.daemon, "DELETE", f"/api/kernels/{kernel_id}", b"")
        yield poll_until(lambda: self.listed().addCallback(lambda ks: not ks), 60)
        yield poll_until(lambda: not any(pid_alive(pid) for pid in pids), 60)
        yield self.check_invariants()

    @defer.inlineCallbacks
    def test_random_interleavings(self) -> None:
        """Random starts, restarts, interrupts, deletes and disconnects at three kernels, then the invariants hold."""
        rng = random.Random(20261204)
        ids = []
        for _ in range(3):
            _, _, body = yield self.client.request("POST", "/api/kernels", {})
            ids.append(body["id"])
        operations = []
        for _ in range(12):
            kernel_id = rng.choice(ids)
            action = rng.choice(["restart", "interrupt", "delete", "start", "restart-leave", "delete-leave"])
            if action == "start":
                operations.append(self.client.request("POST", "/api/kernels", {"kernel_id": kernel_id}))
            elif action == "restart":
                operations.append(self.client.request("POST", f"/api/kernels/{kernel_id}/restart"))
            elif action == "interrupt":
                operations.append(self.client.request("POST", f"/api/kernels/{kernel_id}/interrupt"))
            elif action == "delete":
                operations.append(self.client.request("DELETE", f"/api/kernels/{kernel_id}"))
            else:
                method, suffix = ("POST", "/restart") if action == "restart-leave" else ("DELETE", "")
                operations.append(request_and_disconnect(self.daemon, method, f"/api/kernels/{kernel_id}{suffix}", b""))
        results = yield defer.DeferredList(operations, consumeErrors=True)
        for ok, result in results:
            self.assertTrue(ok, result)
            if isinstance(result, tuple):
                self.assertIn(result[0], (200, 201, 204, 404), result)
        yield self.check_invariants()
