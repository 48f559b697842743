"""The bounded buffer of a disconnected channels session: count, bytes and age limits."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial import unittest

from kgd.kernels.messages import RawMessage, new_message
from kgd.personalities.jupyter_websocket.session_buffer import BufferLimits, SessionBuffer, message_size


def stream(text: str) -> RawMessage:
    """An iopub stream message carrying ``text``."""
    return new_message("stream", {"name": "stdout", "text": text}, session="s")


def texts(buffer: SessionBuffer) -> list[str]:
    """What a replay would send, as the stream texts in order."""
    return [json.loads(entry.message.content)["text"] for entry in buffer.drain()]


class SessionBufferTests(unittest.TestCase):
    """Messages are kept in order, and the oldest go first when a limit is reached."""

    def setUp(self) -> None:
        self.clock = Clock()

    def test_keeps_messages_in_order_with_their_channel(self) -> None:
        """Within the limits every message is replayed, oldest first, with the channel it came on."""
        buffer = SessionBuffer(self.clock, BufferLimits(10, 10_000, 60))
        self.assertEqual(buffer.append("iopub", stream("a")), 0)
        reply = new_message("execute_reply", {"status": "ok"}, session="s")
        buffer.append("shell", reply)
        buffer.append("iopub", stream("b"))
        drained = buffer.drain()
        self.assertEqual([entry.channel for entry in drained], ["iopub", "shell", "iopub"])
        self.assertIs(drained[1].message, reply)
        self.assertEqual((len(buffer), buffer.bytes, buffer.dropped), (0, 0, 0))

    def test_count_limit_drops_oldest(self) -> None:
        """With room for three messages, the fourth and fifth push out the two oldest."""
        buffer = SessionBuffer(self.clock, BufferLimits(3, 10_000, 60))
        dropped = [buffer.append("iopub", stream(t)) for t in "abcde"]
        self.assertEqual(dropped, [0, 0, 0, 1, 1])
        self.assertEqual(buffer.dropped, 2)
        self.assertEqual(texts(buffer), ["c", "d", "e"])

    def test_byte_limit_drops_oldest(self) -> None:
        """The byte limit counts every part: messages leave from the front until the rest fits."""
        size = message_size(stream("x" * 100))
        buffer = SessionBuffer(self.clock, BufferLimits(100, 2 * size + size // 2, 60))
        buffer.append("iopub", stream("1" * 100))
        buffer.append("iopub", stream("2" * 100))
        self.assertEqual(buffer.append("iopub", stream("3" * 100)), 1)
        self.assertLessEqual(buffer.bytes, 2 * size + size // 2)
        self.assertEqual([t[0] for t in texts(buffer)], ["2", "3"])

    def test_message_larger_than_the_byte_limit_is_dropped(self) -> None:
        """A single message over the byte limit is dropped alone, with a log event naming it;
        the small replies and status kept before and after it are still replayed."""
        buffer = SessionBuffer(self.clock, BufferLimits(100, 1000, 60), "k/s")
        buffer.append("iopub", stream("small"))
        reply = new_message("execute_reply", {"status": "ok"}, session="s")
        buffer.append("shell", reply)
        with capturedLogs() as events:
            self.assertEqual(buffer.append("iopub", stream("x" * 2000)), 1)
        buffer.append("iopub", new_message("status", {"execution_state": "idle"}, session="s"))
        self.assertEqual(buffer.dropped, 1)
        [event] = [e for e in events if e.get("event") == "session_buffer_dropped"]
        self.assertEqual((event["session"], event["msg_type"], event["limit"]), ("k/s", "stream", 1000))
        self.assertGreater(event["size"], 2000)
        self.assertEqual([entry.message.msg_type for entry in buffer.drain()], ["stream", "execute_reply", "status"])

    def test_oversized_message_still_expires_old_ones(self) -> None:
        """Dropping an oversized message still applies the age limit to what is kept."""
        buffer = SessionBuffer(self.clock, BufferLimits(100, 1000, 60))
        buffer.append("iopub", stream("old"))
        self.clock.advance(61)
        self.assertEqual(buffer.append("iopub", stream("x" * 2000)), 2)
        self.assertEqual(len(buffer), 0)

    def test_buffers_count_toward_bytes(self) -> None:
        """Binary buffers (widgets, images) weigh in the byte limit too."""
        message = RawMessage(stream("x").header, b"{}", b"{}", b"{}", [b"\0" * 1000])
        self.assertEqual(message_size(message), len(message.header) + 6 + 1000)

    def test_age_limit_drops_old_messages(self) -> None:
        """Messages older than the age limit are gone at the next append and at replay."""
        buffer = SessionBuffer(self.clock, BufferLimits(100, 10_000, 10))
        buffer.append("iopub", stream("old"))
        self.clock.advance(6)
        buffer.append("iopub", stream("middle"))
        self.clock.advance(5)
        self.assertEqual(buffer.append("iopub", stream("new")), 1)
        self.clock.advance(5.5)
        self.assertEqual(texts(buffer), ["new"])
        self.assertEqual(buffer.dropped, 2)

    def test_limits_enabled(self) -> None:
        """Any zero limit means nothing is buffered at all."""
        self.assertTrue(BufferLimits(1, 1, 1).enabled)
        self.assertFalse(BufferLimits(0, 1, 1).enabled)
        self.assertFalse(BufferLimits(1, 0, 1).enabled)
        self.assertFalse(BufferLimits(1, 1, 0).enabled)
