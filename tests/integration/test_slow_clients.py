"""A client that pipelines HTTP requests and never reads the answers, against the real daemon.

Without flow control the daemon read on and queued every answer in memory
(about 3 MiB/s per connection, no token needed).  Here one such client sends
200,000 pipelined requests (8 MB); the daemon must stop reading it, answer
only what fits in its bound, stay within a stated growth of its resident
memory, and keep serving everyone else meanwhile.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.trial import unittest

from tests.integration.daemon import Client, Daemon, poll_until

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
