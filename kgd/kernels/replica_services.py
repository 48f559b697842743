"""The Redis connection, subscription and leases of one replica, as a Twisted service.

Started before ``Kernels`` and stopped after it: while kernels are shut down
or detached on stop, their leases are still renewed and their events still
published; only then do renewals stop and the connections close.  Imports
txredisapi, so only ``makeService`` (after the reactor is installed) imports
this module.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer

from kgd.kernels.leases import LeaseKeeper
from kgd.kernels.redis_events import EventSubscription
from kgd.kernels.redis_store import RedisKernelStore, connect
from kgd.kernels.redis_url import RedisAddress, parse_redis_url
from kgd.kernels.replica_events import ReplicaEvent

#: Seconds any one Redis command may take before the store is called unavailable.
STORE_TIMEOUT = 2.0


def redis_store(url: str, prefix: str, reactor: Any) -> tuple[RedisKernelStore, RedisAddress]:
    """A store on the Redis of ``url`` (password from the URL or ``KGD_REDIS_PASSWORD``); it connects by itself."""
    address = parse_redis_url(url, os.environ.get("KGD_REDIS_PASSWORD"))
    return RedisKernelStore(connect(address, reactor, STORE_TIMEOUT), address, prefix, reactor, STORE_TIMEOUT), address


class ReplicaConnections(Service):
    """Renews this replica's leases and receives the other replicas' events until the kernels are stopped."""

    def __init__(
        self,
        store: RedisKernelStore,
        address: RedisAddress,
        prefix: str,
        keeper: LeaseKeeper,
        on_event: Callable[[ReplicaEvent], None],
        reactor: Any,
    ) -> None:
        self._store = store
        self._address = address
        self._prefix = prefix
        self._keeper = keeper
        self._on_event = on_event
        self._reactor = reactor
        self._subscription: EventSubscription | None = None

    def startService(self) -> None:
        super().startService()
        self._keeper.start()
        self._subscription = EventSubscription(self._address, self._prefix, self._on_event, self._reactor, STORE_TIMEOUT)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        self._keeper.stop()
        if self._subscription is not None:
            yield self._subscription.disconnect()
        yield self._store.disconnect()


def replica_name(configured: str, host: str, pid: int) -> str:
    """``--replica-id``, or this host's name and process id: unique among live replicas."""
    return configured or f"{host}-{pid}"

