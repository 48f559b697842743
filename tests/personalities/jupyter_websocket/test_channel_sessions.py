"""KernelSessions in memory: fake kernel sockets, a task.Clock, connections that record what they get.

What a notebook client notices of its channel session: iopub reaches every
connection, a second connection of the same session replaces the first, a
reconnect replays what was missed, and a buffer is discarded by another
session or by age.  Asserted through what each connection receives and the
kernel's REST model, never through the sessions' private state.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.kernels import Kernels
from kgd.kernels.messages import RawMessage
from kgd.personalities.jupyter_websocket.channel_sessions import KernelSessions
from kgd.personalities.jupyter_websocket.session_buffer import BufferLimits
from tests.kernels.fakes import fake_machine

LIMITS = BufferLimits(messages=100, bytes=1024 * 1024, age=60.0)


class RecordingConnection:
    """A client connection that keeps what it is sent and how it was ended."""

    def __init__(self) -> None:
        self.received: list[tuple[str, RawMessage]] = []
        self.ended: tuple[int, str] | None = None

    def deliver(self, channel: str, message: RawMessage) -> None:
        self.received.append((channel, message))

    def end(self, code: int, reason: str) -> defer.Deferred[None]:
        self.ended = (code, reason)
        return defer.succeed(None)

    def streams(self) -> list[str]:
        """The stdout texts this connection was sent, in order."""
        return [m.content.decode() for channel, m in self.received if channel == "iopub" and m.msg_type == "stream"]


class KernelSessionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        machine = fake_machine(self.mktemp())
        self.clock = machine.clock
        kernels = Kernels(machine.specs, machine.launcher, machine.sockets, machine.clock, daemon_env={"PATH": "/bin"})
        kernels.startService()
        self.addCleanup(self._stop, kernels)
        started = kernels.start_kernel()
        self.clock.advance(0)
        self.kernel = self.successResultOf(started)
        self.process = machine.launcher.alive()[0]
        self.emptied: list[KernelSessions] = []
        self.sessions = KernelSessions(self.kernel, self.clock, LIMITS, self.emptied.append)

    def _stop(self, kernels: Kernels) -> None:
        stopped = kernels.stopService()
        self.clock.advance(10)
        self.successResultOf(stopped)

    def connect(self, session_id: str | None) -> tuple[RecordingConnection, Any]:
        connection = RecordingConnection()
        session = self.sessions.connect(connection, session_id)
        self.clock.advance(0)
        return connection, session

    def print(self, text: str) -> None:
        """The kernel prints ``text`` on iopub."""
        self.process.publish("stream", {"name": "stdout", "text": text})
        self.clock.advance(0)

    def connections(self) -> int:
        return self.kernel.model()["connections"]

    def test_iopub_reaches_every_connection(self) -> None:
        """Kernel output reaches every open connection of the kernel, each counted in the model."""
        first, _ = self.connect("a")
        second, _ = self.connect("b")
        self.print("hello")
        self.assertEqual(len(first.streams()), 1)
        self.assertEqual(first.streams(), second.streams())
        self.assertIn("hello", first.streams()[0])
        self.assertEqual(self.connections(), 2)

    def test_a_connects_nudge_status_reaches_only_that_connection(self) -> None:
        """The busy/idle answering a new connection's nudge go to it alone; the kernel's own output still reaches all."""
        first, _ = self.connect("a")
        before = len(first.received)
        second, _ = self.connect("b")
        self.assertEqual([m.msg_type for c, m in second.received], ["status", "status"])
        self.assertEqual(len(first.received), before, "another connection's nudge status was fanned out")
        self.print("both\n")
        self.assertEqual(first.streams()[-1], second.streams()[-1])
        self.assertIn("both", second.streams()[-1])

    def test_same_session_replaces_stale_connection(self) -> None:
        """A second connection with an open session's id closes the first (1000) and takes its place."""
        stale, _ = self.connect("s")
        fresh, _ = self.connect("s")
        self.assertEqual(stale.ended, (1000, "replaced by a newer connection of the same session"))
        self.assertIsNone(fresh.ended)
        self.assertEqual(self.connections(), 1)
        self.print("after")
        self.assertEqual(stale.streams(), [])
        self.assertEqual(len(fresh.streams()), 1)

    def test_reconnect_replays_missed_output(self) -> None:
        """Output while a session was away is delivered, in order, when it reconnects."""
        gone, session = self.connect("s")
        self.sessions.disconnect(session, gone)
        self.assertEqual(self.connections(), 0)
        self.print("one")
        self.print("two")
        back, _ = self.connect("s")
        self.assertEqual(len(back.streams()), 2)
        self.assertIn("one", back.streams()[0])
        self.assertIn("two", back.streams()[1])
        self.assertEqual(self.connections(), 1)

    def test_another_session_discards_the_buffer(self) -> None:
        """A connection with another session id means the old one will not come back: nothing is replayed."""
        gone, session = self.connect("s")
        self.sessions.disconnect(session, gone)
        self.print("missed")
        self.connect("other")
        back, _ = self.connect("s")
        self.assertEqual(back.streams(), [])

    def test_buffer_expires(self) -> None:
        """A session that does not reconnect within the buffer age gets nothing replayed."""
        gone, session = self.connect("s")
        self.sessions.disconnect(session, gone)
        self.print("missed")
        self.clock.advance(LIMITS.age + 1)
        back, _ = self.connect("s")
        self.assertEqual(back.streams(), [])

    def test_anonymous_connection_is_not_buffered(self) -> None:
        """Without a session id a closed connection is released: the sessions empty and output is not kept."""
        gone, session = self.connect(None)
        self.sessions.disconnect(session, gone)
        self.assertEqual(self.emptied, [self.sessions])
        self.assertEqual(self.connections(), 0)

    def test_end_all_closes_every_connection(self) -> None:
        """Ending the kernel's sessions closes each connection with the given code and clears the count."""
        first, _ = self.connect("a")
        second, _ = self.connect("b")
        self.sessions.end_all(1001, "gateway stopping")
        self.assertEqual((first.ended, second.ended), ((1001, "gateway stopping"),) * 2)
        self.assertEqual(self.connections(), 0)
