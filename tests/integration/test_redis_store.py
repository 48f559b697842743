"""The Redis kernel store against a real ``redis-server``: records, leases, slots, events and outages."""

from __future__ import annotations

import os
import uuid
from typing import Any

from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from kgd.interfaces import IKernelStore, ILeaseTable
from kgd.kernels import replica_events
from kgd.kernels.leases import LeaseKeeper
from kgd.kernels.records import KernelRecord, StoreUnavailable, encode_record
from kgd.kernels.redis_events import EventSubscription
from kgd.kernels.redis_store import RedisKernelStore, connect
from kgd.kernels.redis_url import parse_redis_url
from tests.integration import redis_server
from tests.integration.daemon import poll_until

TIMEOUT = 1.0
PASSWORD = "hunter2-very-secret"


def record(kernel_id: str, **changes: Any) -> KernelRecord:
    base = KernelRecord(
        kernel_id=kernel_id,
        spec_name="python3",
        connection_info={
            "transport": "tcp", "ip": "127.0.0.1", "shell_port": 1, "iopub_port": 2, "stdin_port": 3,
            "control_port": 4, "hb_port": 5, "key": "k", "signature_scheme": "hmac-sha256",
        },
        env={},
        cwd="/",
        started=1.0,
        last_activity=2.0,
    )
    return base.with_changes(**changes)


class _RedisTestCase(unittest.TestCase):
    timeout = 120
    password: str | None = None

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        reason = redis_server.missing()
        if reason:
            raise unittest.SkipTest(reason)
        root = self.mktemp()
        os.makedirs(root)
        self.server = redis_server.RedisServer(root, password=self.password)
        self.addCleanup(self.server.stop)
        yield self.server.start()
        self.prefix = f"kgd-test-{uuid.uuid4().hex[:8]}:"
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def store(self, url: str | None = None, password: str | None = None) -> RedisKernelStore:
        address = parse_redis_url(url or self.server.url, password=password)
        store = RedisKernelStore(connect(address, reactor, TIMEOUT), address, self.prefix, reactor, TIMEOUT)
        self.addCleanup(store.disconnect)
        return store

    def subscribe(self, received: list[replica_events.ReplicaEvent]) -> EventSubscription:
        subscription = EventSubscription(parse_redis_url(self.server.url), self.prefix, received.append, reactor, TIMEOUT)
        self.addCleanup(subscription.disconnect)
        return subscription

    @defer.inlineCallbacks
    def fails_promptly(self, call: Any) -> Any:
        """``call()`` fails with StoreUnavailable within the timeout plus a margin; return the exception."""
        started = reactor.seconds()
        try:
            yield call()
        except StoreUnavailable as unavailable:
            self.assertLess(reactor.seconds() - started, TIMEOUT + 1.5)
            return unavailable
        self.fail(f"{call} did not fail")


class RecordTests(_RedisTestCase):
    def test_provides_the_interfaces(self) -> None:
        """The Redis store is a kernel store and a lease table, method for method."""
        store = self.store()
        self.assertTrue(verifyObject(IKernelStore, store))
        self.assertTrue(verifyObject(ILeaseTable, store))

    @defer.inlineCallbacks
    def test_records_round_trip_between_replicas(self) -> Any:
        """A record put through one replica's store is read, listed and removed through another's."""
        a, b = self.store(), self.store()
        yield a.put(record("k1"))
        yield a.put(record("k2", restart_count=3))
        self.assertEqual((yield b.get("k2")), record("k2", restart_count=3))
        self.assertEqual(sorted(r.kernel_id for r in (yield b.load_all())), ["k1", "k2"])
        yield b.remove("k1")
        yield b.remove("never-there")
        self.assertIsNone((yield a.get("k1")))
        self.assertEqual([r.kernel_id for r in (yield a.load_all())], ["k2"])

    @defer.inlineCallbacks
    def test_bad_records_are_set_aside(self) -> Any:
        """Garbage, a future version and a record filed under another id are logged and skipped; good records still load."""
        store = self.store()
        yield store.put(record("good"))
        raw = store._client
        for kernel_id, value in (
            ("garbage", b"{not json"),
            ("future", encode_record(record("future")).replace(b'"version":1', b'"version":99')),
            ("elsewhere", encode_record(record("someone-else"))),
        ):
            yield raw.set(f"{self.prefix}kernel:{kernel_id}", value)
            yield raw.sadd(f"{self.prefix}kernels", kernel_id)
        self.assertEqual([r.kernel_id for r in (yield store.load_all())], ["good"])
        self.assertIsNone((yield store.get("garbage")))
        rejected = sorted(e["kernel_id"] for e in self.logged if e.get("event") == "kernel_record_rejected")
        self.assertEqual(rejected, ["elsewhere", "future", "garbage", "garbage"])
        self.assertIsNotNone((yield raw.get(f"{self.prefix}kernel:future")))


class PasswordTests(_RedisTestCase):
    password = PASSWORD

    @defer.inlineCallbacks
    def test_password_from_url_or_environment(self) -> Any:
        """The store authenticates with the URL's password, or with one passed in from the environment."""
        yield self.store().put(record("k1"))
        from_env = self.store(f"redis://127.0.0.1:{self.server.port}/0", password=PASSWORD)
        self.assertEqual((yield from_env.get("k1")), record("k1"))

    @defer.inlineCallbacks
    def test_wrong_password_fails_promptly_and_never_shows_a_password(self) -> Any:
        """A wrong password makes every call fail promptly with StoreUnavailable; no password reaches the message, repr or logs."""
        wrong = "wrong-" + PASSWORD
        store = self.store(f"redis://:{wrong}@127.0.0.1:{self.server.port}/0")
        unavailable = yield self.fails_promptly(lambda: store.get("k1"))
        good = self.store()
        yield good.put(record("k1"))
        texts = [str(unavailable), repr(unavailable), repr(store), repr(good)]
        texts += [formatEvent(e) or "" for e in self.logged] + [repr(e) for e in self.logged]
        for text in texts:
            self.assertNotIn(PASSWORD, text)
        self.assertIn(f"127.0.0.1:{self.server.port}", str(unavailable))
        self.assertIn("WRONGPASS", str(unavailable))


class LeaseTests(_RedisTestCase):
    @defer.inlineCallbacks
    def test_compare_then_act(self) -> Any:
        """Only the holder renews or releases a lease; once released another replica acquires it."""
        a, b = self.store(), self.store()
        self.assertTrue((yield a.acquire("k1", "replica-a", 30)))
        self.assertFalse((yield b.acquire("k1", "replica-b", 30)))
        self.assertFalse((yield b.renew("k1", "replica-b", 30)))
        self.assertFalse((yield b.release("k1", "replica-b")))
        self.assertEqual((yield b.owner("k1")), "replica-a")
        self.assertTrue((yield a.renew("k1", "replica-a", 30)))
        self.assertTrue((yield a.release("k1", "replica-a")))
        self.assertIsNone((yield a.owner("k1")))
        self.assertTrue((yield b.acquire("k1", "replica-b", 30)))

    @defer.inlineCallbacks
    def test_lease_expires_after_its_ttl(self) -> Any:
        """A lease nobody renews expires by itself, and its holder can no longer renew it."""
        a = self.store()
        self.assertTrue((yield a.acquire("k1", "replica-a", 0.2)))
        yield poll_until(lambda: a.owner("k1").addCallback(lambda owner: owner is None), timeout=10)
        self.assertFalse((yield a.renew("k1", "replica-a", 30)))

    @defer.inlineCallbacks
    def test_two_replicas_race_to_take_over_an_expired_lease(self) -> Any:
        """Twenty times over, two replicas try to take over the same expired lease at once: exactly one wins each time."""
        b, c = self.store(), self.store()
        yield b.ping()
        yield c.ping()
        winners = []
        for round_ in range(20):
            kernel_id = f"k{round_}"
            yield b.acquire(kernel_id, "dead-replica", 0.001)
            yield poll_until(lambda: b.owner(kernel_id).addCallback(lambda owner: owner is None), timeout=10)
            results = yield defer.gatherResults([b.acquire(kernel_id, "b", 30), c.acquire(kernel_id, "c", 30)])
            self.assertEqual(sorted(results), [False, True])
            owner = yield b.owner(kernel_id)
            self.assertEqual(owner, "b" if results[0] else "c")
            winners.append(owner)
        self.assertEqual(len(winners), 20)


    @defer.inlineCallbacks
    def test_dead_owner_taken_over_within_the_ttl(self) -> Any:
        """Two replicas' LeaseKeepers on real Redis: once the owner stops renewing, the other takes the kernel over within the TTL (plus a margin)."""
        ttl = 1.0
        lost: list[str] = []
        a = LeaseKeeper(self.store(), "a", ttl, reactor, lost.append)
        b = LeaseKeeper(self.store(), "b", ttl, reactor, lost.append)
        for keeper in (a, b):
            keeper.start()
            self.addCleanup(keeper.stop)
        self.assertTrue((yield a.acquire("k1")))
        self.assertFalse((yield b.acquire("k1")))
        a.stop()
        stopped = reactor.seconds()
        yield poll_until(lambda: b.acquire("k1"), timeout=10)
        self.assertLess(reactor.seconds() - stopped, ttl + 1.0)
        self.assertEqual(b.held, {"k1"})
        self.assertEqual(lost, [])


class SlotTests(_RedisTestCase):
    @defer.inlineCallbacks
    def test_max_kernels_holds_across_replicas(self) -> Any:
        """Twenty concurrent slot reservations from two replicas against a maximum of 5: exactly 5 succeed; a release frees one."""
        a, b = self.store(), self.store()
        reserves = [(a if i % 2 else b).reserve_slot(f"k{i}", 5) for i in range(20)]
        results = yield defer.gatherResults(reserves)
        self.assertEqual(results.count(True), 5)
        self.assertEqual(len((yield a.slot_holders())), 5)
        holder = f"k{results.index(True)}"
        self.assertTrue((yield b.reserve_slot(holder, 5)), "a kernel that holds a slot keeps it")
        self.assertFalse((yield b.reserve_slot("k-late", 5)))
        yield a.release_slot(holder)
        self.assertTrue((yield b.reserve_slot("k-late", 5)))
        self.assertEqual(len((yield b.slot_holders())), 5)


class EventTests(_RedisTestCase):
    @defer.inlineCallbacks
    def test_publish_reaches_another_replica(self) -> Any:
        """A kernel deletion published by one replica reaches another replica's subscriber; garbage on the channel is dropped."""
        received: list[replica_events.ReplicaEvent] = []
        yield self.subscribe(received).when_subscribed()
        a = self.store()
        yield a.publish(b"not an event")
        deleted = replica_events.ReplicaEvent("kernel_deleted", "k1", "replica-a")
        yield a.publish(replica_events.encode_event(deleted))
        yield poll_until(lambda: received, timeout=10)
        self.assertEqual(received, [deleted])
        self.assertTrue(any(e.get("event") == "replica_event_rejected" for e in self.logged))

    @defer.inlineCallbacks
    def test_request_to_the_owner_gets_its_reply(self) -> Any:
        """Replica B asks the owner A to interrupt a kernel through Redis and receives A's reply."""
        store_a, store_b = self.store(), self.store()
        pending = replica_events.PendingRequests("b", reactor, timeout=10)

        def owner_a(event: replica_events.ReplicaEvent) -> None:
            if event.kind == "request" and event.target == "a":
                store_a.publish(replica_events.encode_event(replica_events.reply(event, "a", True)))

        yield self.subscribe_to(owner_a)
        yield self.subscribe_to(pending.received)
        asked = replica_events.request("b", "a", "k1", "interrupt", "r1")
        answer = pending.expect(asked)
        yield store_b.publish(replica_events.encode_event(asked))
        answered = yield answer
        self.assertEqual((answered.kind, answered.origin, answered.ok, answered.request_id), ("reply", "a", True, "r1"))

    def subscribe_to(self, on_event: Any) -> defer.Deferred[None]:
        subscription = EventSubscription(parse_redis_url(self.server.url), self.prefix, on_event, reactor, TIMEOUT)
        self.addCleanup(subscription.disconnect)
        return subscription.when_subscribed()


class OutageTests(_RedisTestCase):
    @defer.inlineCallbacks
    def test_redis_down_then_back(self) -> Any:
        """With Redis stopped every store call fails promptly with StoreUnavailable; once it is back the same store and subscriber work again."""
        store = self.store()
        received: list[replica_events.ReplicaEvent] = []
        yield self.subscribe(received).when_subscribed()
        yield store.put(record("k1"))
        yield self.server.stop()
        calls = [
            store.load_all, lambda: store.get("k1"), lambda: store.put(record("k2")), lambda: store.remove("k1"),
            lambda: store.acquire("k1", "a", 5), lambda: store.renew("k1", "a", 5), lambda: store.release("k1", "a"),
            lambda: store.owner("k1"), lambda: store.reserve_slot("k1", 5), lambda: store.release_slot("k1"),
            lambda: store.publish(b"{}"), store.ping,
        ]
        for call in calls:
            unavailable = yield self.fails_promptly(call)
            self.assertIn("unavailable", str(unavailable))
        yield self.server.start()
        yield poll_until(lambda: store.ping().addCallbacks(lambda _: True, lambda _: False), timeout=20)
        yield store.put(record("k2"))
        self.assertEqual((yield store.get("k2")), record("k2"))
        died = replica_events.ReplicaEvent("kernel_dead", "k2", "replica-a", reason="exited")

        def delivered() -> Any:
            if received:
                return True
            return store.publish(replica_events.encode_event(died)).addCallback(lambda _: False)

        yield poll_until(delivered, timeout=20, interval=0.2)
        self.assertEqual(received[0], died)
