"""Messages between replicas: the JSON codec, and requests to a kernel's owner matched to their replies."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st
from twisted.internet import task
from twisted.trial import unittest

from kgd.kernels import replica_events as events
from kgd.kernels.replica_events import BadEvent, NoReply, ReplicaEvent, decode_event, encode_event

_names = st.text(min_size=1, max_size=20)


@st.composite
def _events(draw: st.DrawFn) -> ReplicaEvent:
    kind = draw(st.sampled_from(events.KINDS))
    kernel_id, origin = draw(_names), draw(_names)
    if kind == "request":
        return events.request(origin, draw(_names), kernel_id, draw(st.sampled_from(events.ACTIONS)), draw(_names))
    if kind == "reply":
        asked = events.request(draw(_names), origin, kernel_id, "interrupt", draw(_names))
        return events.reply(asked, origin, draw(st.booleans()), draw(st.none() | _names))
    return ReplicaEvent(kind, kernel_id, origin, reason=draw(st.none() | _names))


class CodecTests(unittest.SynchronousTestCase):
    @given(_events())
    def test_round_trip(self, event: ReplicaEvent) -> None:
        """Every event a replica can send is read back identically by another replica."""
        self.assertEqual(decode_event(encode_event(event)), event)

    def test_known_vector(self) -> None:
        """A deletion is a small versioned JSON object, stable across releases."""
        self.assertEqual(
            encode_event(ReplicaEvent("kernel_deleted", "k1", "a")),
            b'{"kernel_id":"k1","kind":"kernel_deleted","origin":"a","v":1}',
        )

    def test_refuses_what_it_cannot_read(self) -> None:
        """Garbage, another version, an unknown kind or action, or a request without its fields is refused, not misread."""
        good = json.loads(encode_event(events.request("b", "a", "k1", "restart", "r1")))
        bad = [
            b"not json",
            b"[1]",
            json.dumps({**good, "v": 2}).encode(),
            json.dumps({**good, "kind": "explode"}).encode(),
            json.dumps({**good, "action": "format_disk"}).encode(),
            json.dumps({k: v for k, v in good.items() if k != "request_id"}).encode(),
            json.dumps({**good, "kernel_id": 7}).encode(),
            json.dumps({**good, "kind": "reply", "ok": "yes"}).encode(),
        ]
        for raw in bad:
            self.assertRaises(BadEvent, decode_event, raw)

    def test_request_refuses_unknown_action(self) -> None:
        """A replica cannot ask an owner for anything but interrupt, restart or shutdown."""
        self.assertRaises(ValueError, events.request, "b", "a", "k1", "delete_everything", "r1")


class PendingRequestsTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.pending = events.PendingRequests("b", self.clock, timeout=5.0)

    def test_reply_answers_its_request(self) -> None:
        """The owner's reply fires the matching request with whether it succeeded and why."""
        sent = events.request("b", "a", "k1", "interrupt", "r1")
        waiting = self.pending.expect(sent)
        self.assertTrue(self.pending.received(events.reply(sent, "a", False, "kernel is restarting")))
        answer = self.successResultOf(waiting)
        self.assertEqual((answer.ok, answer.reason), (False, "kernel is restarting"))

    def test_other_replies_are_ignored(self) -> None:
        """A reply addressed to another replica, or to an unknown request, fires nothing."""
        sent = events.request("b", "a", "k1", "restart", "r1")
        waiting = self.pending.expect(sent)
        self.assertFalse(self.pending.received(events.reply(events.request("c", "a", "k1", "restart", "r1"), "a", True)))
        self.assertFalse(self.pending.received(events.reply(events.request("b", "a", "k1", "restart", "r2"), "a", True)))
        self.assertNoResult(waiting)

    def test_no_reply_fails_after_the_deadline(self) -> None:
        """A request its owner never answers fails with NoReply after the timeout, naming the owner; a late reply is dropped."""
        sent = events.request("b", "a", "k1", "shutdown", "r1")
        waiting = self.pending.expect(sent)
        self.clock.advance(4.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        failure = self.failureResultOf(waiting, NoReply)
        self.assertIn("replica a", str(failure.value))
        self.assertFalse(self.pending.received(events.reply(sent, "a", True)))
