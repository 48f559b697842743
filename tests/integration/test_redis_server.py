"""The ``redis-server`` fixture: a real Redis the store tests can start, stop and start again."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration import redis_server


class RedisServerTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        reason = redis_server.missing()
        if reason:
            raise unittest.SkipTest(reason)

    @defer.inlineCallbacks
    def test_answers_then_stops_then_answers_again_on_the_same_port(self) -> Any:
        """The server answers PING once started, not after stop(), and again after a second start() on the same port."""
        server = redis_server.RedisServer(self.mktemp())
        self.addCleanup(server.stop)
        yield server.start()
        self.assertTrue((yield redis_server.ping(server.port)))
        port = server.port
        yield server.stop()
        self.assertFalse((yield redis_server.ping(port)))
        yield server.start()
        self.assertEqual(server.port, port)
        self.assertTrue((yield redis_server.ping(port)))

    @defer.inlineCallbacks
    def test_password_is_required(self) -> Any:
        """With ``--requirepass`` a client without the password gets no PONG; with it, it does."""
        server = redis_server.RedisServer(self.mktemp(), password="s3cret-pw")
        self.addCleanup(server.stop)
        yield server.start()
        self.assertFalse((yield redis_server.ping(server.port)))
        self.assertTrue((yield redis_server.ping(server.port, "s3cret-pw")))
