"""Readiness: named conditions, and the Deferred that waits for all of them."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from kgd.readiness import Readiness


class ReadinessTests(unittest.TestCase):
    """kgd is ready exactly when every expected condition has come true."""

    def test_ready_without_conditions(self) -> None:
        """Nothing expected: ready at once, and when_ready has already fired."""
        readiness = Readiness()
        self.assertTrue(readiness.ready)
        self.assertIsNone(self.successResultOf(readiness.when_ready()))

    def test_waits_for_every_condition(self) -> None:
        """when_ready fires only after the last pending condition is done."""
        readiness = Readiness()
        readiness.expect("listening")
        readiness.expect("prespawn")
        waiter = readiness.when_ready()
        readiness.done("listening")
        self.assertNoResult(waiter)
        self.assertEqual(readiness.pending(), ["prespawn"])
        self.assertEqual(readiness.met(), ["listening"])
        readiness.done("prespawn")
        self.successResultOf(waiter)
        self.assertTrue(readiness.ready)

    def test_track_a_deferred(self) -> None:
        """A tracked Deferred's success meets its condition; its result passes through."""
        readiness = Readiness()
        filled: defer.Deferred[str] = defer.Deferred()
        tracked = readiness.track("prespawn", filled)
        self.assertFalse(readiness.ready)
        filled.callback("pool")
        self.assertTrue(readiness.ready)
        self.assertEqual(self.successResultOf(tracked), "pool")

    def test_failed_condition_stays_pending(self) -> None:
        """A tracked Deferred that fails leaves kgd not ready, and the failure reaches its caller."""
        readiness = Readiness()
        filled: defer.Deferred[None] = defer.Deferred()
        tracked = readiness.track("prespawn", filled)
        filled.errback(RuntimeError("seed failed"))
        self.assertEqual(readiness.pending(), ["prespawn"])
        self.failureResultOf(tracked, RuntimeError)

    def test_met_condition_is_not_expected_again(self) -> None:
        """Expecting a condition that already came true does not make kgd unready."""
        readiness = Readiness()
        readiness.done("listening")
        readiness.expect("listening")
        self.assertTrue(readiness.ready)
