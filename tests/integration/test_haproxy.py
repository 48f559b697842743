"""The HAProxy fixture: round robin with no affinity, and WebSocket upgrades passed through."""

from __future__ import annotations

import os
from typing import Any

import treq
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
    connectWS,
)
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.client import HTTPConnectionPool

from tests.integration import haproxy


class _Text(resource.Resource):
    isLeaf = True

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self.text = text

    def render_GET(self, request: Any) -> bytes:
        return self.text


class _Echo(WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class _EchoClient(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.sendMessage(b"hello through the balancer")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.echoed.callback(payload)
        self.sendClose(1000)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.closed.callback(code)


def _backend(name: bytes) -> tuple[str, int, Any]:
    """A twisted.web server on a free loopback port: ``/`` answers ``name``, ``/healthz`` 200, ``/ws`` echoes."""
    root = _Text(name)
    root.isLeaf = False
    root.putChild(b"", _Text(name))
    root.putChild(b"healthz", _Text(b"ok"))
    echo = WebSocketServerFactory()
    echo.protocol = _Echo
    root.putChild(b"ws", WebSocketResource(echo))
    port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    return "127.0.0.1", port.getHost().port, port


class HAProxyTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        reason = haproxy.missing()
        if reason:
            raise unittest.SkipTest(reason)
        backends = []
        self.listening = []
        for name in (b"first", b"second"):
            host, port, listening = _backend(name)
            self.addCleanup(listening.stopListening)
            backends.append((host, port))
            self.listening.append(listening)
        root = self.mktemp()
        os.makedirs(root)
        self.balancer = haproxy.HAProxy(root, backends)
        self.addCleanup(self.balancer.stop)

    @defer.inlineCallbacks
    def test_round_robin_without_affinity(self) -> Any:
        """Consecutive requests through the balancer alternate between the two backends."""
        yield self.balancer.start()
        pool = HTTPConnectionPool(reactor, persistent=False)
        answers = []
        for _ in range(4):
            response = yield treq.get(self.balancer.url + "/", pool=pool)
            self.assertEqual(response.code, 200)
            answers.append((yield response.content()))
        self.assertEqual(sorted(answers), [b"first", b"first", b"second", b"second"])
        self.assertTrue(all(a != b for a, b in zip(answers, answers[1:])), answers)

    @defer.inlineCallbacks
    def test_dead_backend_costs_no_request(self) -> Any:
        """With one backend gone, every request through the balancer is answered by the other one."""
        yield self.balancer.start()
        yield self.listening[0].stopListening()
        pool = HTTPConnectionPool(reactor, persistent=False)
        for _ in range(4):
            response = yield treq.get(self.balancer.url + "/", pool=pool)
            self.assertEqual((response.code, (yield response.content())), (200, b"second"))

    @defer.inlineCallbacks
    def test_websocket_upgrade_passes_through(self) -> Any:
        """A WebSocket opened through the balancer reaches a backend's echo server and gets its message back."""
        yield self.balancer.start()
        factory = WebSocketClientFactory(self.balancer.ws_url + "/ws")
        factory.protocol = _EchoClient
        factory.echoed = defer.Deferred()
        factory.closed = defer.Deferred()
        connectWS(factory, timeout=10)
        echoed = yield factory.echoed.addTimeout(15, reactor)
        self.assertEqual(echoed, b"hello through the balancer")
        self.assertEqual((yield factory.closed.addTimeout(15, reactor)), 1000)
