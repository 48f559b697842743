"""InFlight: one operation per key, its result shared by everyone who asked meanwhile."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.in_flight import InFlight


class InFlightTests(SynchronousTestCase):
    def test_callers_meanwhile_share_one_operation(self) -> None:
        operations: list[defer.Deferred[str]] = []
        flights: InFlight[str] = InFlight()

        def start() -> defer.Deferred[str]:
            operations.append(defer.Deferred())
            return operations[-1]

        first, second = flights.run("k", start), flights.run("k", start)
        third = flights.wait("k")
        self.assertEqual(len(operations), 1)
        self.assertIn("k", flights)
        operations[0].callback("done")
        self.assertEqual([self.successResultOf(d) for d in (first, second, third)], ["done"] * 3)
        self.assertNotIn("k", flights)
        flights.run("k", start)
        self.assertEqual(len(operations), 2, "a later call starts anew")

    def test_a_cancelled_caller_leaves_the_operation_and_the_others(self) -> None:
        operation: defer.Deferred[str] = defer.Deferred()
        flights: InFlight[str] = InFlight()
        leaving, staying = flights.run("k", lambda: operation), flights.run("k", lambda: operation)
        leaving.cancel()
        self.failureResultOf(leaving, defer.CancelledError)
        self.assertFalse(operation.called)
        operation.errback(ValueError("failed"))
        self.failureResultOf(staying, ValueError)

    def test_an_operation_done_at_once(self) -> None:
        flights: InFlight[int] = InFlight()
        self.assertEqual(self.successResultOf(flights.run("k", lambda: defer.succeed(1))), 1)
        self.assertNotIn("k", flights)
