"""Receiving replica events: a Redis subscription to ``<prefix>events`` that survives reconnects.

The sending side is ``RedisKernelStore.publish``; the messages are
``kgd.kernels.replica_events``.  A subscription holds its own connection
(a Redis connection in subscriber mode can do nothing else), subscribes
again every time it reconnects, decodes each message and hands the
``ReplicaEvent`` to ``on_event``; a message it cannot read is logged
(``event="replica_event_rejected"``) and dropped.  Events published while a
replica is disconnected from Redis are lost (pub/sub keeps nothing), so
whatever acts on them must also reconcile from the store.
"""

from __future__ import annotations

from typing import Any, Callable

import txredisapi
from twisted.internet import defer
from twisted.logger import Logger

from kgd.kernels.redis_store import ReconnectingRedisFactory, start_connecting
from kgd.kernels.redis_url import RedisAddress
from kgd.kernels.replica_events import BadEvent, ReplicaEvent, decode_event

log = Logger()


class _EventsProtocol(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.received(message)


class _EventsFactory(ReconnectingRedisFactory):
    protocol = _EventsProtocol

    def __init__(self, address: RedisAddress, channel: str, on_event: Callable[[ReplicaEvent], None]) -> None:
        super().__init__(
            uuid=str(address), dbid=None, poolsize=1, isLazy=True,
            password=address.password, username=address.username, convertNumbers=False,
        )
        self.channel = channel
        self.on_event = on_event
        self.subscribed: defer.Deferred[None] = defer.Deferred()

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            conn.subscribe(self.channel).addCallbacks(self._subscribed, self._not_subscribed)

    def _subscribed(self, _: Any) -> None:
        log.info("subscribed to {channel}", channel=self.channel, event="replica_events_subscribed")
        if not self.subscribed.called:
            self.subscribed.callback(None)

    def _not_subscribed(self, failure: Any) -> None:
        log.warn("could not subscribe to {channel}: {error}", channel=self.channel, error=failure.getErrorMessage())

    def received(self, message: Any) -> None:
        try:
            event = decode_event(message)
        except BadEvent as bad:
            log.warn("replica event dropped: {reason}", reason=str(bad), event="replica_event_rejected")
            return
        self.on_event(event)


class EventSubscription:
    """Replica events from ``<prefix>events`` delivered to ``on_event`` until ``disconnect()``."""

    def __init__(self, address: RedisAddress, prefix: str, on_event: Callable[[ReplicaEvent], None], reactor: Any, timeout: float = 2.0) -> None:
        self._factory = start_connecting(_EventsFactory(address, f"{prefix}events", on_event), address, reactor, timeout)

    def when_subscribed(self) -> defer.Deferred[None]:
        """Fires once the first subscription is in place (events published before it are not received)."""
        waiting: defer.Deferred[None] = defer.Deferred()
        self._factory.subscribed.addCallback(lambda result: (waiting.callback(result), result)[1])
        return waiting

    def disconnect(self) -> defer.Deferred[None]:
        """Unsubscribe for good and close the connection."""
        return self._factory.disconnect()
