"""Redis as the shared kernel store of several replicas (``--kernel-store redis://...``).

Keys, all under a configurable prefix (``kgd:`` below)::

    kgd:kernel:<id>   the kernel's record (``encode_record`` bytes)
    kgd:kernels       set of the ids that have a record
    kgd:lease:<id>    the id of the replica that supervises the kernel, with a TTL
    kgd:slots         set of the ids holding one of ``--max-kernels`` slots
    kgd:events        pub/sub channel of ``kgd.kernels.replica_events`` messages
    kgd:sessions      hash of Jupyter Server's sessions (``kgd.kernels.redis_sessions``)

``RedisKernelStore`` provides ``IKernelStore`` and ``ILeaseTable`` over one
txredisapi connection that reconnects by itself.  Every call is bounded by a
timeout: when Redis is down or does not answer, the Deferred fails with
``StoreUnavailable`` and a reason within that time, never hangs.  (A write
that failed so may still have reached Redis: treat its outcome as unknown.)  Writes that
touch two keys, and every compare-then-act on a lease or a slot, are Lua
scripts, so they are atomic across replicas.

The password (from the URL or the environment) goes to the connection and
nowhere else: not into a repr, a log line or an exception message.
txredisapi uses the global reactor, so it is confined to this module and
``kgd.kernels.redis_events``.
"""

from __future__ import annotations

from typing import Any

import txredisapi
from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgd.interfaces import IKernelStore, ILeaseTable
from kgd.kernels.records import BadRecord, KernelRecord, StoreUnavailable, decode_record, encode_record
from kgd.kernels.redis_sessions import RedisSessionTable
from kgd.kernels.redis_url import RedisAddress

log = Logger()

def endpoint_for(address: RedisAddress, reactor: Any, timeout: float) -> IStreamClientEndpoint:
    """TCP to the Redis host, with TLS verified against the host name for ``rediss://``."""
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
    if address.tls:
        endpoint = wrapClientTLS(optionsForClientTLS(address.host), endpoint)
    return endpoint


class ReconnectingRedisFactory(txredisapi.RedisFactory):
    """A txredisapi factory that remembers why its last connection was refused (a wrong password, a bad db).

    txredisapi reports that by failing a Deferred only its non-lazy API
    hands out; kgd keeps the reason for ``StoreUnavailable`` instead."""

    last_error: str | None = None

    def connectionError(self, why: str) -> None:
        self.last_error = why
        log.warn("Redis refused the connection: {why}", why=why, event="kernel_store_refused")

    def addConnection(self, conn: Any) -> None:
        self.last_error = None
        super().addConnection(conn)


def start_connecting(factory: txredisapi.RedisFactory, address: RedisAddress, reactor: Any, timeout: float) -> txredisapi.RedisFactory:
    """Connect ``factory`` to ``address``; it reconnects by itself, attempts at most 2 s apart."""
    factory.initialDelay = 0.2
    factory.maxDelay = 2.0
    factory.startConnecting(endpoint_for(address, reactor, timeout))
    return factory


def connect(address: RedisAddress, reactor: Any, timeout: float) -> ReconnectingRedisFactory:
    """A txredisapi connection to ``address``: its ``handler`` runs commands, its ``disconnect()`` ends it."""
    factory = ReconnectingRedisFactory(
        uuid=str(address), dbid=address.db, poolsize=1, isLazy=True,
        password=address.password, username=address.username,
        replyTimeout=timeout, convertNumbers=False,
    )
    return start_connecting(factory, address, reactor, timeout)


# KEYS[1] record key, KEYS[2] id set; ARGV[1] record, ARGV[2] id.
_PUT = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SADD', KEYS[2], ARGV[2]); return 1"
_REMOVE = "redis.call('DEL', KEYS[1]); redis.call('SREM', KEYS[2], ARGV[1]); return 1"
# KEYS[1] lease key; ARGV[1] owner, ARGV[2] TTL in ms.
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
# KEYS[1] slot set; ARGV[1] kernel id, ARGV[2] maximum.
_RESERVE = (
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end "
    "if redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) then "
    "redis.call('SADD', KEYS[1], ARGV[1]); return 1 end "
    "return 0"
)

_UNREACHABLE = (txredisapi.ConnectionError, defer.TimeoutError, defer.CancelledError, error.ConnectError, error.ConnectionClosed)
#: Error replies that mean "this Redis cannot serve you now", not a bug in a command of ours.
_UNAVAILABLE_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM", "LOADING", "BUSY", "MASTERDOWN", "READONLY", "MISCONF")


@implementer(IKernelStore, ILeaseTable)
class RedisKernelStore:
    """Kernel records, leases, kernel slots and event publishing in one Redis database."""

    def __init__(self, connection: ReconnectingRedisFactory, address: RedisAddress, prefix: str, clock: IReactorTime, timeout: float) -> None:
        """``connection`` comes from ``connect(address, ...)``; ``timeout`` bounds every call."""
        self._connection = connection
        self._client = connection.handler
        self._address = address
        self._prefix = prefix
        self._clock = clock
        self._timeout = timeout
        self.events_channel = f"{prefix}events"

    def __repr__(self) -> str:
        return f"<RedisKernelStore {self._address} prefix={self._prefix!r}>"

    def _key(self, kind: str, kernel_id: str) -> str:
        return f"{self._prefix}{kind}:{kernel_id}"

    def _call(self, command: str, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        d = defer.maybeDeferred(getattr(self._client, command), *args, **kwargs)
        d.addTimeout(self._timeout, self._clock)
        return d.addErrback(self._unavailable, command)

    def _unavailable(self, failure: Failure, command: str) -> Failure:
        refused = failure.check(txredisapi.ResponseError) and failure.getErrorMessage().startswith(_UNAVAILABLE_REPLIES)
        if not (refused or failure.check(*_UNREACHABLE)):
            return failure
        if failure.check(defer.TimeoutError, defer.CancelledError):
            detail = f"no answer within {self._timeout:g} s"
            if self._connection.last_error:
                detail += f"; last refusal: {self._connection.last_error}"
        else:
            detail = failure.getErrorMessage() or failure.type.__name__
        if self._address.password:
            detail = detail.replace(self._address.password, "***")
        raise StoreUnavailable(f"Redis store at {self._address} unavailable ({command}): {detail}")

    # IKernelStore

    @defer.inlineCallbacks
    def load_all(self) -> defer.Deferred[list[KernelRecord]]:
        ids = sorted((yield self._call("smembers", f"{self._prefix}kernels")))
        if not ids:
            return []
        raws = yield self._call("mget", [self._key("kernel", kernel_id) for kernel_id in ids])
        records = []
        for kernel_id, raw in zip(ids, raws):
            if raw is not None:
                record = self._decode(kernel_id, raw)
                if record is not None:
                    records.append(record)
        return records

    @defer.inlineCallbacks
    def get(self, kernel_id: str) -> defer.Deferred[KernelRecord | None]:
        raw = yield self._call("get", self._key("kernel", kernel_id))
        return None if raw is None else self._decode(kernel_id, raw)

    def put(self, record: KernelRecord) -> defer.Deferred[None]:
        keys = [self._key("kernel", record.kernel_id), f"{self._prefix}kernels"]
        return self._call("eval", _PUT, keys, [encode_record(record), record.kernel_id]).addCallback(lambda _: None)

    def remove(self, kernel_id: str) -> defer.Deferred[None]:
        keys = [self._key("kernel", kernel_id), f"{self._prefix}kernels"]
        return self._call("eval", _REMOVE, keys, [kernel_id]).addCallback(lambda _: None)

    def _decode(self, kernel_id: str, raw: str | bytes) -> KernelRecord | None:
        """The record, or None after logging why it was set aside.

        A bad record stays in Redis: a replica running a newer kgd may
        have written it and can still read it."""
        try:
            record = decode_record(raw.encode("utf-8") if isinstance(raw, str) else raw)
            if record.kernel_id != kernel_id:
                raise BadRecord(f"record names kernel {record.kernel_id!r}")
        except BadRecord as bad:
            log.warn(
                "kernel record {kernel_id} set aside: {reason}",
                kernel_id=kernel_id, reason=str(bad), event="kernel_record_rejected",
            )
            return None
        return record

    # ILeaseTable

    def acquire(self, kernel_id: str, owner: str, ttl: float) -> defer.Deferred[bool]:
        d = self._call("set", self._key("lease", kernel_id), owner, pexpire=_ms(ttl), only_if_not_exists=True)
        return d.addCallback(lambda reply: reply is not None)

    def renew(self, kernel_id: str, owner: str, ttl: float) -> defer.Deferred[bool]:
        d = self._call("eval", _RENEW, [self._key("lease", kernel_id)], [owner, _ms(ttl)])
        return d.addCallback(lambda reply: int(reply) == 1)

    def release(self, kernel_id: str, owner: str) -> defer.Deferred[bool]:
        d = self._call("eval", _RELEASE, [self._key("lease", kernel_id)], [owner])
        return d.addCallback(lambda reply: int(reply) == 1)

    def owner(self, kernel_id: str) -> defer.Deferred[str | None]:
        return self._call("get", self._key("lease", kernel_id))

    def owners(self, kernel_ids: list[str]) -> defer.Deferred[list[str | None]]:
        """The holder of each kernel's lease (None where it is free), in one round trip."""
        if not kernel_ids:
            return defer.succeed([])
        return self._call("mget", [self._key("lease", kernel_id) for kernel_id in kernel_ids])

    # --max-kernels across replicas

    def reserve_slot(self, kernel_id: str, maximum: int) -> defer.Deferred[bool]:
        """Take one of ``maximum`` kernel slots for ``kernel_id`` before starting it; False if all are taken.

        Idempotent: a kernel that already holds a slot keeps it."""
        d = self._call("eval", _RESERVE, [f"{self._prefix}slots"], [kernel_id, maximum])
        return d.addCallback(lambda reply: int(reply) == 1)

    def release_slot(self, kernel_id: str) -> defer.Deferred[None]:
        """Give ``kernel_id``'s slot back (its start failed, or it was shut down)."""
        return self._call("srem", f"{self._prefix}slots", kernel_id).addCallback(lambda _: None)

    def slot_holders(self) -> defer.Deferred[list[str]]:
        """The ids holding a slot (a replica that died while starting one leaves it behind)."""
        return self._call("smembers", f"{self._prefix}slots").addCallback(sorted)

    # sessions

    def session_table(self) -> RedisSessionTable:
        """Jupyter Server's sessions, shared by every replica, over this store's connection and timeout."""
        return RedisSessionTable(self._call, f"{self._prefix}sessions", self._clock)

    # events

    def publish(self, message: bytes) -> defer.Deferred[int]:
        """Send one ``replica_events`` message to every subscribed replica; fires with how many received it."""
        return self._call("publish", self.events_channel, message)

    def disconnect(self) -> defer.Deferred[None]:
        """Close the connection for good (the daemon is stopping)."""
        return self._connection.disconnect()

    def ping(self) -> defer.Deferred[None]:
        """Fire once Redis answers (readiness), or fail with ``StoreUnavailable``."""
        return self._call("ping").addCallback(lambda _: None)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
