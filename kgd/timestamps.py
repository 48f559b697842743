"""The one ISO 8601 timestamp format kgd writes.

UTC with microseconds and a ``Z`` suffix, as Jupyter Server writes a
kernel's ``last_activity``; the JSON log's ``time`` uses it too, so the two
can be compared as text.
"""

from __future__ import annotations

from datetime import datetime, timezone


def isoformat(moment: datetime) -> str:
    """*moment* (timezone-aware) as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def isoformat_epoch(seconds: float) -> str:
    """A POSIX time (seconds since the epoch, as ``log_time`` holds) in the same format."""
    return isoformat(datetime.fromtimestamp(seconds, timezone.utc))
