"""Jupyter Server's session table shared by replicas in their Redis store (``--kernel-store redis://``).

Behind a round-robin balancer a session made through one replica is asked
for through another, so the table lives in Redis: one hash,
``<prefix>sessions``, field = session id, value = the row as versioned JSON
(``encode_row``).  What two replicas could do at once is atomic: adding a
session for a path that has one returns that one (a Lua script scans and
adds), an update is a compare-and-set of the whole row (retried if another
replica changed it meanwhile), a removal reads and deletes in one script,
and dropping the sessions of gone kernels checks each row's kernel in the
script that deletes it.

``RedisSessionTable`` runs its commands through ``RedisKernelStore``'s call
(one connection, every command bounded by the store's timeout, failures as
``StoreUnavailable``), so this module imports no Redis client.  A row this
kgd cannot read (a newer replica's) is logged and treated as absent, but
left in Redis.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from kgd.interfaces import ISessionTable
from kgd.kernels.session_table import NotebookSession, UnknownSession, changed, new_session_id

log = Logger()

#: The row version this module writes; rows of any other version are set aside.
ROW_VERSION = 1

#: Runs one Redis command (txredisapi method name, arguments) and fires with its reply.
RedisCall = Callable[..., "defer.Deferred[Any]"]

# KEYS[1] the hash; ARGV[1] path, ARGV[2] new id, ARGV[3] new row.  Returns the path's row, existing or added.
_ADD = """
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
  local ok, row = pcall(cjson.decode, raw)
  if ok and type(row) == 'table' and row.path == ARGV[1] then return raw end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return ARGV[3]
"""
# KEYS[1] the hash; ARGV[1] id, ARGV[2] the row as read, ARGV[3] the new row.  1 if replaced.
_REPLACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""
# KEYS[1] the hash; ARGV[1] id.  The removed row, or nil.
_TAKE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then redis.call('HDEL', KEYS[1], ARGV[1]) end
return raw
"""
# KEYS[1] the hash; ARGV the gone kernels' ids.  The removed rows.
_FORGET = """
local gone = {}
for _, id in ipairs(ARGV) do gone[id] = true end
local dropped = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local ok, row = pcall(cjson.decode, fields[i + 1])
  if ok and type(row) == 'table' and gone[row.kernel_id] then
    redis.call('HDEL', KEYS[1], fields[i])
    dropped[#dropped + 1] = fields[i + 1]
  end
end
return dropped
"""


class BadSessionRow(ValueError):
    """A stored row this version of kgd cannot read."""


def encode_row(session: NotebookSession, created: float) -> str:
    """The row as compact, key-sorted JSON; ``created`` (seconds) orders the list."""
    return json.dumps(
        {
            "version": ROW_VERSION,
            "id": session.session_id,
            "path": session.path,
            "name": session.name,
            "type": session.type,
            "kernel_id": session.kernel_id,
            "created": created,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def decode_row(raw: str | bytes) -> tuple[NotebookSession, float]:
    """The session and its creation time; ``BadSessionRow`` says what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise BadSessionRow(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadSessionRow("not a JSON object")
    if data.get("version") != ROW_VERSION:
        raise BadSessionRow(f"unknown row version {data.get('version')!r} (this kgd reads version {ROW_VERSION})")
    strings = {key: data.get(key) for key in ("id", "path", "name", "type", "kernel_id")}
    wrong = sorted(key for key, value in strings.items() if not isinstance(value, str))
    created = data.get("created")
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        wrong.append("created")
    if wrong:
        raise BadSessionRow(f"missing or mistyped: {', '.join(wrong)}")
    session = NotebookSession(strings["id"], strings["path"], strings["name"], strings["type"], strings["kernel_id"])
    return session, float(created)


@implementer(ISessionTable)
class RedisSessionTable:
    """Sessions in one Redis hash, shared by every replica of the store."""

    def __init__(self, call: RedisCall, key: str, clock: IReactorTime, new_id: Callable[[], str] = new_session_id) -> None:
        """``call`` is ``RedisKernelStore``'s (timeout, ``StoreUnavailable``); ``key`` the hash; ``clock`` dates new rows."""
        self._call = call
        self._key = key
        self._clock = clock
        self._new_id = new_id

    @defer.inlineCallbacks
    def add(self, path: str, name: str, type: str, kernel_id: str) -> Any:
        new = NotebookSession(self._new_id(), path, name, type, kernel_id)
        row = encode_row(new, self._clock.seconds())
        stored = yield self._call("eval", _ADD, [self._key], [path, new.session_id, row])
        if stored == row:
            return new, True
        return decode_row(stored)[0], False

    @defer.inlineCallbacks
    def get(self, session_id: str) -> Any:
        raw = yield self._call("hget", self._key, session_id)
        read = None if raw is None else self._decode(raw)
        if read is None:
            raise UnknownSession(session_id)
        return read[0]

    @defer.inlineCallbacks
    def find_by_path(self, path: str) -> Any:
        sessions = yield self.list()
        return next((s for s in sessions if s.path == path), None)

    @defer.inlineCallbacks
    def list(self) -> Any:
        raws = yield self._call("hvals", self._key)
        rows = [read for read in map(self._decode, raws) if read is not None]
        return [session for session, _ in sorted(rows, key=lambda row: (row[1], row[0].session_id))]

    @defer.inlineCallbacks
    def update(self, session_id: str, changes: Mapping[str, Any]) -> Any:
        while True:
            raw = yield self._call("hget", self._key, session_id)
            read = None if raw is None else self._decode(raw)
            if read is None:
                raise UnknownSession(session_id)
            session = changed(read[0], changes)
            replaced = yield self._call("eval", _REPLACE, [self._key], [session_id, raw, encode_row(session, read[1])])
            if int(replaced) == 1:
                return session
            # Another replica changed the row between the read and the write: apply the changes to its row.

    @defer.inlineCallbacks
    def remove(self, session_id: str) -> Any:
        raw = yield self._call("eval", _TAKE, [self._key], [session_id])
        read = None if raw is None else self._decode(raw)
        if read is None:
            raise UnknownSession(session_id)
        return read[0]

    @defer.inlineCallbacks
    def uses_kernel(self, kernel_id: str) -> Any:
        sessions = yield self.list()
        return any(s.kernel_id == kernel_id for s in sessions)

    @defer.inlineCallbacks
    def forget_kernels(self, kernel_ids: Iterable[str]) -> Any:
        gone = sorted(set(kernel_ids))
        if not gone:
            return []
        raws = yield self._call("eval", _FORGET, [self._key], gone)
        return [read[0] for read in map(self._decode, raws or []) if read is not None]

    def _decode(self, raw: str | bytes) -> tuple[NotebookSession, float] | None:
        try:
            return decode_row(raw)
        except BadSessionRow as bad:
            log.warn("session row set aside: {reason}", reason=str(bad), event="session_row_rejected")
            return None
