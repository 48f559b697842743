"""A client that pipelines HTTP requests and never reads the answers, against the real daemon.

Without flow control the daemon read on and queued every answer in memory
(about 3 MiB/s per connection, no token needed).  Here one such client sends
200,000 pipelined requests (8 MB); the daemon must stop reading it, answer
only what fits in its bound, stay within a stated growth of its resident
memory, and keep serving everyone else meanwhile.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.trial import unittest

from tests.integration import ws
from tests.integration.daemon import Client, Daemon, daemon_with_kernel, poll_until

TOKEN = "pipe-s3cret"
REQUESTS = 200_000
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#: How much the daemon's RSS may grow for one such client: the bound on unread
#: answers (4 MiB), the transport's own buffer, and the interpreter's overhead on
#: them (measured: +4 MiB with the bound, +104 MiB without it).
RSS_GROWTH_LIMIT = 32 * 1024**2


def rss_bytes(pid: int) -> int:
    """The resident set size of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class _Pipeliner(protocol.Protocol):
    """Sends every request at once and never reads a byte of the answers."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # stop reading: the answers stay in the daemon's socket
        self.transport.write(REQUEST * REQUESTS)


class PipeliningTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def test_pipelining_client_that_never_reads(self) -> Any:
        """The daemon stops reading the client, its RSS grows less than 32 MiB, and another client is served."""
        daemon = Daemon(["--auth-token", TOKEN])
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon, token=TOKEN)
        for _ in range(20):  # warm up: imports, the first responses, the log
            status, _, _ = yield client.request("GET", "/api/kernelspecs")
            self.assertEqual(status, 200)
        before = rss_bytes(daemon.transport.pid)

        pipeliner = _Pipeliner()
        yield endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.port), pipeliner)
        self.addCleanup(lambda: pipeliner.transport.abortConnection())

        answered: list[int] = []

        @defer.inlineCallbacks
        def settled() -> Any:
            """True once the count of pipelined answers in the log stops moving while another client is served."""
            status, _, _ = yield client.request("GET", "/api/kernelspecs")
            self.assertEqual(status, 200)
            answered.append(daemon.log.count(b"GET /healthz"))
            return len(answered) > 2 and answered[-1] == answered[-2] == answered[-3] and answered[-1] > 0

        yield poll_until(settled, timeout=120, interval=0.3)
        grown = rss_bytes(daemon.transport.pid) - before
        self.assertLess(answered[-1], REQUESTS // 10, "the daemon read on from a client that was not reading")
        self.assertLess(grown, RSS_GROWTH_LIMIT, f"RSS grew by {grown / 2**20:.1f} MiB")


BOUND = 32 * 1024**2
#: What the daemon's RSS may grow by beyond the two bounds while a client that
#: reads far slower than a kernel printing 256 MB holds on: the transport's own
#: buffer, one message in flight, ZeroMQ's queue (bounded at 1000 messages) and
#: the allocator's overhead on 64 KiB pieces (measured on this 2-core machine:
#: 43-88 MiB in all, 11-24 MiB beyond the bounds).
RSS_SLACK = 48 * 1024**2
FLOOD = "import sys\nfor _ in range(4096):\n    sys.stdout.write('x' * 65536); sys.stdout.flush()\nopen({done!r}, 'w').close()"


class _Trickle:
    """Makes a stalled client read for one reactor turn every ``interval`` seconds: a slow reader, not a dead one."""

    def __init__(self, transport: Any, interval: float) -> None:
        self._transport = transport
        self._loop = task.LoopingCall(self._read_a_little)
        self._loop.start(interval, now=False)

    def _read_a_little(self) -> None:
        self._transport.resumeProducing()
        reactor.callLater(0, self._transport.pauseProducing)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()


class SlowReaderMemoryTests(unittest.TestCase):
    timeout = 240

    @defer.inlineCallbacks
    def test_a_slow_reader_costs_at_most_its_bounds(self) -> None:
        """256 MB of output to a client that reads far slower: it is closed (1008), and the daemon's RSS peak stays within backlog + session buffer + slack."""
        daemon, _, kernel_id = yield daemon_with_kernel(
            self, ["--max-client-backlog", str(BOUND), "--session-buffer-bytes", str(BOUND)]
        )
        path = f"/api/kernels/{kernel_id}/channels?session_id=stalled"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        stalled = ws.StalledClient(request)
        yield endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.port), stalled)
        self.addCleanup(lambda: stalled.transport.abortConnection())
        self.assertIn(b" 101 ", (yield stalled.upgraded))
        trickle = _Trickle(stalled.transport, 0.02)
        self.addCleanup(trickle.stop)
        # The cell is sent by a client that leaves at once (no session_id: nothing is kept for it).
        sender = yield ws.connect(daemon.ws_url, kernel_id)
        yield sender.execute("x = 1")
        idle = rss_bytes(daemon.transport.pid)
        done = os.path.abspath(self.mktemp())
        sender.send(ws.execute_request(FLOOD.format(done=done)))
        yield sender.close()

        # The end of the flood is a file the cell writes last: under load, iopub
        # messages past ZeroMQ's high-water mark are dropped, its idle status too.
        peak = [idle]

        def flood_over() -> bool:
            peak.append(rss_bytes(daemon.transport.pid))
            return os.path.exists(done)

        yield poll_until(flood_over, timeout=180, interval=0.02)
        self.assertIn(b"client not reading", daemon.log)
        grown = max(peak) - idle
        self.assertLess(grown, 2 * BOUND + RSS_SLACK, f"peak RSS grew by {grown / 2**20:.0f} MiB")
        reader = yield ws.connect(daemon.ws_url, kernel_id)
        out = yield reader.execute("print(x + 1)")
        yield reader.close()
        self.assertEqual("".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream"), "2\n")
