"""The one timestamp format: what clients read in last_activity and the JSON log's time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from twisted.trial.unittest import SynchronousTestCase

from kgd.timestamps import isoformat, isoformat_epoch


class IsoformatTests(SynchronousTestCase):
    def test_utc_with_z(self) -> None:
        """A moment in any zone is written in UTC with microseconds and Z, as Jupyter Server writes it."""
        moment = datetime(2026, 11, 27, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
        self.assertEqual(isoformat(moment), "2026-11-27T09:30:00.123456Z")

    def test_epoch_seconds(self) -> None:
        """A log event's POSIX time reads the same way as a kernel's last_activity."""
        self.assertEqual(isoformat_epoch(0.5), "1970-01-01T00:00:00.500000Z")
