"""Tests for kgd.kernels.process_end: the shared whenEnded of running kernels."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.process_end import ProcessEnd


class ProcessEndTests(SynchronousTestCase):
    def test_waiters_before_and_after(self) -> None:
        """Waiters get the exit code when the kernel ends, and at once if they ask afterwards."""
        end = ProcessEnd()
        early = end.whenEnded()
        self.assertNoResult(early)
        end.end(3)
        self.assertEqual(self.successResultOf(early), 3)
        self.assertEqual(self.successResultOf(end.whenEnded()), 3)

    def test_first_end_wins_and_cancelled_waiters_skipped(self) -> None:
        """A second end changes nothing, and a waiter cancelled by a timeout does not stop the others."""
        end = ProcessEnd()
        cancelled = end.whenEnded()
        cancelled.cancel()
        self.failureResultOf(cancelled)
        other = end.whenEnded()
        end.end(None)
        end.end(1)
        self.assertIsNone(self.successResultOf(other))
        self.assertIsNone(self.successResultOf(end.whenEnded()))
