"""JSON-lines log records: stable fields at the top level, nothing that is not plain data."""

from __future__ import annotations

import io
import json

from twisted.logger import LogLevel, Logger
from twisted.python.failure import Failure
from twisted.trial import unittest

from kgd.logs import JsonLinesObserver, event_as_record


class RecordTests(unittest.TestCase):
    """What one event becomes."""

    def test_fields_and_message(self) -> None:
        """time, level, namespace and the rendered message come first; the event's plain fields follow."""
        event = {
            "log_format": "{method} {path} {status}",
            "log_level": LogLevel.info,
            "log_namespace": "kgd.access",
            "log_time": 0.0,
            "method": "GET",
            "path": "/api",
            "route": "/api",
            "status": 200,
            "duration_ms": 1.5,
            "event": "http_request",
        }
        record = event_as_record(event)
        self.assertEqual(record["time"], "1970-01-01T00:00:00.000000Z")
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "kgd.access")
        self.assertEqual(record["message"], "GET /api 200")
        for key in ("method", "path", "route", "status", "duration_ms", "event"):
            self.assertEqual(record[key], event[key])
        self.assertFalse(any(key.startswith("log_") for key in record))

    def test_objects_are_left_out(self) -> None:
        """A field holding an object (a request, a logger) is dropped, never rendered with repr."""

        class Secretive:
            def __repr__(self) -> str:
                return "Authorization: token s3cret"

        record = event_as_record({"log_format": "x", "log_time": 1.0, "request": Secretive(), "ids": ["a", 1]})
        self.assertNotIn("request", record)
        self.assertNotIn("s3cret", json.dumps(record))
        self.assertEqual(record["ids"], ["a", 1])

    def test_exception_fields_and_failures(self) -> None:
        """An exception field becomes its type and message; a logged failure adds its traceback."""
        try:
            raise ValueError("boom")
        except ValueError:
            failure = Failure()
        record = event_as_record(
            {"log_format": "failed", "log_time": 1.0, "error": KeyError("k"), "log_failure": failure}
        )
        self.assertEqual(record["error"], "KeyError: 'k'")
        self.assertIn("ValueError: boom", record["traceback"])


class ObserverTests(unittest.TestCase):
    """The observer writes one parseable line per event."""

    def test_one_json_object_per_line(self) -> None:
        """Each event is one line of JSON, even when the message has newlines."""
        out = io.StringIO()
        log = Logger(namespace="kgd.test", observer=JsonLinesObserver(out))
        log.info("kernel {kernel_id} started", kernel_id="abc", event="kernel_started")
        log.warn("two\nlines")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first, second = (json.loads(line) for line in lines)
        self.assertEqual((first["kernel_id"], first["event"], first["message"]), ("abc", "kernel_started", "kernel abc started"))
        self.assertEqual((second["level"], second["message"]), ("warn", "two\nlines"))
