"""The replicas' session table without a Redis server: its rows, and its logic over ``FakeRedisHashes``."""

from __future__ import annotations

import itertools
import json
from typing import Any

from twisted.internet import defer, task
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kgd.kernels.records import StoreUnavailable
from kgd.kernels.redis_sessions import BadSessionRow, RedisSessionTable, decode_row, encode_row
from kgd.kernels.session_table import NotebookSession, UnknownSession
from tests.kernels.fake_redis_hash import FakeRedisHashes
from tests.kernels.session_table_contract import SessionTableContract

KEY = "kgd:sessions"
SESSION = NotebookSession("s1", "work/é.ipynb", "é", "notebook", "k1")


class RowTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A row decodes to the session and creation time it was encoded from, unicode included."""
        self.assertEqual(decode_row(encode_row(SESSION, 12.5)), (SESSION, 12.5))
        self.assertEqual(decode_row(encode_row(SESSION, 12.5).encode()), (SESSION, 12.5))

    def test_bad_rows(self) -> None:
        """What this kgd cannot read fully is refused with the reason: not JSON, another version, a field missing or mistyped."""
        good = {"version": 1, "id": "s1", "path": "p", "name": "", "type": "notebook", "kernel_id": "k1", "created": 1.0}
        for raw, reason in [
            ("{", "not JSON"),
            ("[]", "not a JSON object"),
            (json.dumps({**good, "version": 2}), "unknown row version 2"),
            (json.dumps({k: v for k, v in good.items() if k != "path"}), "missing or mistyped: path"),
            (json.dumps({**good, "kernel_id": 3, "created": True}), "missing or mistyped: kernel_id, created"),
        ]:
            error = self.assertRaises(BadSessionRow, decode_row, raw)
            self.assertIn(reason, str(error), raw)


class FakeRedisTableTestCase(TestCase):
    def setUp(self) -> None:
        self.redis = FakeRedisHashes()
        self.clock = task.Clock()
        numbers = itertools.count(1)
        self.new_id = lambda: f"s{next(numbers)}"

    def tables(self, count: int) -> list[Any]:
        return [RedisSessionTable(self.redis.call, KEY, self.clock, new_id=self.new_id) for _ in range(count)]


class RedisSessionTableContractTests(SessionTableContract, FakeRedisTableTestCase):
    """``RedisSessionTable`` over the fake keeps the session table contract."""


class RedisSessionTableTests(FakeRedisTableTestCase):
    @defer.inlineCallbacks
    def test_listed_oldest_first_by_creation_time(self) -> Any:
        """Rows carry the clock's time when added; the list is ordered by it, whatever order Redis returns them in."""
        (table,) = self.tables(1)
        self.clock.advance(20)
        late, _ = yield table.add("late", "", "notebook", "k1")
        self.clock.advance(-10)
        early, _ = yield table.add("early", "", "notebook", "k1")
        self.assertEqual((yield table.list()), [early, late])

    @defer.inlineCallbacks
    def test_update_retried_on_a_concurrent_change(self) -> Any:
        """A row changed between the read and the compare-and-set is read again; both changes land, creation time kept."""
        a, b = self.tables(2)
        self.clock.advance(5)
        session, _ = yield a.add("a", "a", "notebook", "k1")
        self.redis.before_replace.append(lambda: b.update(session.session_id, {"name": "renamed"}))
        self.redis.commands.clear()
        updated = yield a.update(session.session_id, {"kernel_id": "k2"})
        self.assertEqual(updated, NotebookSession(session.session_id, "a", "renamed", "notebook", "k2"))
        self.assertEqual(self.redis.commands, ["hget", "eval replace", "hget", "eval replace", "hget", "eval replace"])
        self.assertEqual(decode_row(self.redis.hashes[KEY][session.session_id])[1], 5.0)

    @defer.inlineCallbacks
    def test_rows_it_cannot_read_are_set_aside_and_kept(self) -> Any:
        """A newer replica's row is logged and treated as absent (listed nowhere, UnknownSession), and left in Redis."""
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        (table,) = self.tables(1)
        kept, _ = yield table.add("a", "", "notebook", "k1")
        self.redis.hashes[KEY]["future"] = '{"version": 2, "path": "b", "kernel_id": "k1"}'
        self.assertEqual((yield table.list()), [kept])
        yield self.assertFailure(table.get("future"), UnknownSession)
        self.assertIn("future", self.redis.hashes[KEY])
        self.assertIn("session_row_rejected", [event.get("event") for event in logged])

    @defer.inlineCallbacks
    def test_store_unavailable_passes_through(self) -> Any:
        """A store out of reach fails every call with StoreUnavailable (the routes answer 503)."""
        (table,) = self.tables(1)
        self.redis.unavailable = True
        for call in (table.list, lambda: table.add("a", "", "notebook", "k1"), lambda: table.get("s1"), lambda: table.update("s1", {})):
            yield self.assertFailure(call(), StoreUnavailable)
