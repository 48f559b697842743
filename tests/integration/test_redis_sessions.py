"""The replicas' session table against a real ``redis-server``: the Lua scripts, races between connections, an outage."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from kgd.kernels.redis_sessions import decode_row
from tests.integration.test_redis_store import _RedisTestCase
from tests.kernels.session_table_contract import SessionTableContract


class RedisSessionTableContractTests(SessionTableContract, _RedisTestCase):
    """Each table on its own connection, as each replica has one: the contract holds across them."""

    def tables(self, count: int) -> list[Any]:
        return [self.store().session_table() for _ in range(count)]


class RedisSessionTableTests(_RedisTestCase):
    @defer.inlineCallbacks
    def test_rows_in_one_hash_and_unreadable_rows_left_alone(self) -> Any:
        """Sessions are fields of ``<prefix>sessions``; the scripts step over a row that is not JSON and keep it."""
        store = self.store()
        table = store.session_table()
        yield store._client.hset(f"{self.prefix}sessions", "garbage", "{not json")
        session, created = yield table.add("a", "", "notebook", "k1")
        self.assertTrue(created)
        stored = yield store._client.hgetall(f"{self.prefix}sessions")
        self.assertEqual(sorted(stored), sorted(["garbage", session.session_id]))
        self.assertEqual(decode_row(stored[session.session_id])[0], session)
        self.assertEqual((yield table.forget_kernels(["k1"])), [session])
        self.assertEqual((yield table.list()), [])
        self.assertEqual((yield store._client.hkeys(f"{self.prefix}sessions")), ["garbage"])

    @defer.inlineCallbacks
    def test_redis_down(self) -> Any:
        """With Redis stopped every call fails promptly with StoreUnavailable and the reason."""
        table = self.store().session_table()
        yield table.add("a", "", "notebook", "k1")
        yield self.server.stop()
        for call in (
            table.list, lambda: table.get("s"), lambda: table.add("b", "", "notebook", "k1"),
            lambda: table.update("s", {"name": "n"}), lambda: table.remove("s"), lambda: table.forget_kernels(["k1"]),
        ):
            unavailable = yield self.fails_promptly(call)
            self.assertIn("unavailable", str(unavailable))
