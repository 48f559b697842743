"""Request bodies above ``--max-body-size`` get a JSON 413 and are never buffered.

Raw HTTP/1.1 is fed to the real ``GatewaySite`` over a ``StringTransport``,
so both a declared ``Content-Length`` and a chunked body are covered.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kgd.web.cors import CorsSettings
from kgd.web.resource import GatewayResource, Mount
from kgd.web.site import GatewaySite
from tests.web.test_resource import TinyApp




def exchange(raw: bytes, limit: int = 16) -> tuple[int, dict[bytes, bytes], Any]:
    mounts = [Mount((), TinyApp("app").app.resource(), lambda segments: False)]
    site = GatewaySite(GatewayResource("/", mounts, cors=CorsSettings(allow_origin="*")), max_body_size=limit)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    response = transport.value()
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    if headers.get(b"Transfer-Encoding") == b"chunked":
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    channel.connectionLost(None)
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


class BodyLimitTests(SynchronousTestCase):
    """What a client sending too much gets."""

    def test_declared_length_above_limit(self) -> None:
        """A Content-Length above the limit is a 413 in the JSON error shape, with CORS headers."""
        body = b'{"pad": "' + b"x" * 40 + b'"}'
        status, headers, error = exchange(
            b"POST /api/thing HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.assertEqual(status, 413)
        self.assertEqual(error, {"reason": "Request Entity Too Large", "message": "The request body is larger than the gateway accepts"})
        self.assertEqual(headers[b"Access-Control-Allow-Origin"], b"*")

    def test_chunked_body_above_limit(self) -> None:
        """A chunked body is counted as it arrives and refused once past the limit."""
        chunks = b"".join(b"%x\r\n%s\r\n" % (10, b"0123456789") for _ in range(3)) + b"0\r\n\r\n"
        status, _, error = exchange(b"POST /api/thing HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        self.assertEqual(status, 413)

    def test_body_within_limit(self) -> None:
        """A body within the limit reaches the route."""
        status, _, body = exchange(b"POST /api/thing HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
        self.assertEqual((status, body["app"]), (200, "app"))
