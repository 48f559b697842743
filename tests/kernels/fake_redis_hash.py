"""Redis hashes in memory, with the Lua scripts of ``kgd.kernels.redis_sessions`` done in Python.

Each script runs whole, as Redis runs one, so ``RedisSessionTable``'s own
logic (rows, ordering, the compare-and-set retry, rows it cannot read) is
tested without a server; ``tests.integration.test_redis_sessions`` runs the
real scripts.  ``before_replace`` hooks run just before the next
compare-and-set: another replica's write landing between a read and a write;
``unavailable`` fails every call as an unreachable Redis does.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet import defer

from kgd.kernels import redis_sessions
from kgd.kernels.records import StoreUnavailable


def _row(raw: str) -> dict[str, Any] | None:
    try:
        row = json.loads(raw)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


class FakeRedisHashes:
    """``call(command, *args)`` as ``RedisKernelStore._call`` has it, over dicts; every reply fires at once."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.before_replace: list[Callable[[], Any]] = []
        self.commands: list[str] = []
        self.unavailable = False
        self._scripts = {
            redis_sessions._ADD: self._add,
            redis_sessions._REPLACE: self._replace,
            redis_sessions._TAKE: self._take,
            redis_sessions._FORGET: self._forget,
        }

    def call(self, command: str, *args: Any) -> defer.Deferred[Any]:
        self.commands.append(command)
        if self.unavailable:
            return defer.fail(StoreUnavailable(f"Redis store at redis://fake unavailable ({command}): down"))
        return defer.maybeDeferred(getattr(self, f"_{command}"), *args)

    def _hget(self, key: str, field: str) -> str | None:
        return self.hashes.get(key, {}).get(field)

    def _hvals(self, key: str) -> list[str]:
        return list(self.hashes.get(key, {}).values())

    def _eval(self, script: str, keys: list[str], args: list[Any]) -> Any:
        self.commands[-1] = f"eval {self._scripts[script].__name__[1:]}"
        return self._scripts[script](self.hashes.setdefault(keys[0], {}), *args)

    def _add(self, rows: dict[str, str], path: str, session_id: str, new: str) -> str:
        for raw in rows.values():
            row = _row(raw)
            if row is not None and row.get("path") == path:
                return raw
        rows[session_id] = new
        return new

    def _replace(self, rows: dict[str, str], session_id: str, expected: str, new: str) -> int:
        while self.before_replace:
            self.before_replace.pop(0)()
        if rows.get(session_id) != expected:
            return 0
        rows[session_id] = new
        return 1

    def _take(self, rows: dict[str, str], session_id: str) -> str | None:
        return rows.pop(session_id, None)

    def _forget(self, rows: dict[str, str], *kernel_ids: str) -> list[str]:
        dropped = [(field, raw) for field, raw in rows.items() if (_row(raw) or {}).get("kernel_id") in kernel_ids]
        for field, _ in dropped:
            del rows[field]
        return [raw for _, raw in dropped]
