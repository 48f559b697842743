"""Log output as JSON lines, for ``--log-format json``.

Each twisted.logger event becomes one JSON object on one line::

    {"time": "2026-11-27T09:30:00.123456Z", "level": "info", "namespace": "kgd.access",
     "message": "GET /api/kernels 200 1.2ms", "event": "http_request",
     "method": "GET", "path": "/api/kernels", "route": "/api/kernels", "status": 200, "duration_ms": 1.2}

``message`` is the event rendered as the text format would show it; the
event's own fields (``event``, ``kernel_id``, ``spec_name``, ``method``,
``path``, ``route``, ``status``, ``duration_ms``, ...) follow at the top level
when they are plain JSON values.  Anything else (objects, requests) is left
out rather than rendered, so nothing a field happens to hold (a request
with its headers, say) reaches the log.  A failure adds ``traceback``.

twistd is told to use this observer through the documented hook: an
``ILogObserver`` component on the application (``attach_observer``), which
twistd prefers over its own text observer unless ``--logger`` is given.
"""

from __future__ import annotations

import json
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

from kgd.timestamps import isoformat_epoch

_PLAIN = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def event_as_record(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON object for one log event: time, level, namespace, message, then its plain fields."""
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": isoformat_epoch(event.get("log_time", 0.0)),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith(("log_", "_")) or key in record or key in ("format", "message"):
            continue
        if _plain(value):
            record[key] = value
        elif isinstance(value, BaseException):
            record[key] = f"{type(value).__name__}: {value}"
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return record


@implementer(ILogObserver)
class JsonLinesObserver:
    """Writes each event as one JSON line to a text stream and flushes it."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        self._out.write(json.dumps(event_as_record(event), ensure_ascii=False) + "\n")
        self._out.flush()
