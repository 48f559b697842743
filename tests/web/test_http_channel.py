"""A client that pipelines requests and never reads the responses: in memory.

``SlowReader`` is a ``StringTransport`` whose peer never reads: like a TCP
transport, it tells its producer (the HTTP channel) to pause once more than
``bufferSize`` bytes wait in it, and to resume when the test reads them.
"""

from __future__ import annotations

from typing import Iterable

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from kgd.web.http_channel import MAX_UNREAD_BYTES
from kgd.web.site import GatewaySite

BODY = b"x" * 1000


class Page(Resource):
    """Every path answers 1000 bytes at once, and is counted."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rendered = 0

    def render_GET(self, request: object) -> bytes:
        self.rendered += 1
        return BODY


class SlowReader(StringTransport):
    """A transport that reports its buffer to its producer, as a TCP transport does."""

    bufferSize = 64 * 1024

    def __init__(self) -> None:
        super().__init__(hostAddress=IPv4Address("TCP", "127.0.0.1", 8888), peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.full = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self._check()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        super().writeSequence(data)
        self._check()

    def _check(self) -> None:
        if not self.full and self.producer is not None and len(self.value()) > self.bufferSize:
            self.full = True
            self.producer.pauseProducing()

    def read(self) -> bytes:
        """The client reads everything waiting; the producer is told it may write again."""
        data = self.value()
        self.clear()
        if self.full:
            self.full = False
            self.producer.resumeProducing()
        return data


def pipelined(count: int) -> bytes:
    return b"".join(b"GET /page/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % n for n in range(count))


class PipeliningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.page = Page()
        site = GatewaySite(self.page, clock=Clock())
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = SlowReader()
        self.channel.makeConnection(self.transport)

    def test_stops_reading_from_a_client_not_reading(self) -> None:
        """Once the responses fill the transport, kgd stops reading the connection; what waits stays bounded."""
        self.channel.dataReceived(pipelined(500))  # ~20 KB of requests, ~500 KB of answers
        self.assertTrue(self.transport.full)
        self.assertEqual(self.transport.producerState, "paused")
        self.assertFalse(self.transport.disconnecting)
        self.assertLess(len(self.transport.value()), self.transport.bufferSize + MAX_UNREAD_BYTES + 2 * len(BODY))

    def test_reading_resumes_when_the_client_reads(self) -> None:
        """A slow client that does read gets every answer, in order, and the connection reads again."""
        self.channel.dataReceived(pipelined(100))
        self.assertEqual(self.transport.producerState, "paused")
        answers = self.transport.read()
        self.assertEqual(self.transport.producerState, "producing")
        self.channel.dataReceived(pipelined(1))
        answers += self.transport.read()
        self.assertEqual(answers.count(b"HTTP/1.1 200 OK"), 101)
        self.assertEqual(self.page.rendered, 101)

    def test_closed_past_the_bound(self) -> None:
        """Requests already read whose answers would pass the bound close the connection; the rest are not answered."""
        count = 2 * MAX_UNREAD_BYTES // len(BODY)
        self.channel.dataReceived(pipelined(count))
        self.assertTrue(self.transport.disconnecting)
        self.assertLess(len(self.transport.value()), self.transport.bufferSize + MAX_UNREAD_BYTES + 2 * len(BODY))
        self.assertLess(self.page.rendered, count * 3 // 4)
