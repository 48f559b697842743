"""A channels WebSocket whose client reads slowly, in memory: what kgd holds for it stays bounded.

A real ``ChannelsProtocol`` runs its handshake over a transport that, like
Twisted's TCP transport, pauses its producer once more than ``limit`` bytes
wait in it; ``drain()`` is the client reading them.  The kernel is a fake
on fake sockets and a ``task.Clock``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.kernels import Kernels
from kgd.personalities.jupyter_websocket.ws_channels import Channels, ChannelsSettings
from tests.kernels.fakes import fake_machine

UPGRADE = (
    b"GET /api/kernels/k/channels HTTP/1.1\r\nHost: 127.0.0.1:8888\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
PIECE = 10_000  # bytes of stdout per message


class FlowControlledTransport(StringTransport):
    """Pauses its streaming producer past ``limit`` buffered bytes, as Twisted's FileDescriptor does."""

    def __init__(self, limit: int) -> None:
        super().__init__(hostAddress=IPv4Address("TCP", "127.0.0.1", 8888), peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        self.limit = limit
        self.peak = 0
        self.paused = False
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        self.writes.append(data)
        self._buffered()

    def writeSequence(self, data: Any) -> None:
        super().writeSequence(data)
        self._buffered()

    def _buffered(self) -> None:
        size = len(self.value())
        self.peak = max(self.peak, size)
        if size > self.limit and self.producer is not None and not self.paused:
            self.paused = True
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """The client reads everything buffered; the producer may go on."""
        data = self.value()
        self.clear()
        if self.paused:
            self.paused = False
            self.producer.resumeProducing()
        return data


def frames(data: bytes) -> list[bytes]:
    """The payloads of the unmasked frames in ``data``."""
    return [payload for _, payload in opcodes_and_frames(data)]


def opcodes_and_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame in ``data``."""
    payloads = []
    while data:
        opcode = data[0] & 0x0F
        length, offset = data[1] & 0x7F, 2
        if length == 126:
            (length,), offset = struct.unpack("!H", data[2:4]), 4
        elif length == 127:
            (length,), offset = struct.unpack("!Q", data[2:10]), 10
        payloads.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return payloads


class SlowReaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        machine = fake_machine(self.mktemp())
        self.clock = machine.clock
        # Autobahn's handshake timers go through txaio's loop: the Clock here, not the global reactor.
        self.patch(txaio.config, "loop", self.clock)
        kernels = Kernels(machine.specs, machine.launcher, machine.sockets, machine.clock, daemon_env={"PATH": "/bin"})
        kernels.startService()
        started = kernels.start_kernel()
        self.clock.advance(0)
        self.kernel = self.successResultOf(started)
        self.process = machine.launcher.alive()[0]
        self.channels = Channels(self.clock, ChannelsSettings(ping_interval=0, max_client_backlog=10 * 1024**2))
        self.transport = self.connect("slow")

    def connect(self, session: str) -> FlowControlledTransport:
        """A real channels WebSocket of the kernel, upgraded and past its connect's nudge; its transport."""
        protocol = self.channels.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        protocol.bind(self.channels, self.kernel, session)
        transport = FlowControlledTransport(limit=3 * PIECE)
        protocol.makeConnection(transport)
        protocol.dataReceived(UPGRADE)
        self.clock.advance(0)
        self.assertIn(b" 101 ", transport.drain().split(b"\r\n", 1)[0])
        self.clock.advance(1)  # the connect's nudge and its status, read at once
        transport.drain()
        return transport

    def print(self, count: int) -> None:
        for n in range(count):
            self.process.publish("stream", {"name": "stdout", "text": f"{n:05d}" + "x" * (PIECE - 5)})
        self.clock.advance(0)

    def test_held_output_reaches_the_transport_only_as_the_client_reads(self) -> None:
        """The transport never holds much more than its own limit; the rest waits in kgd, counted, and arrives whole and in order."""
        self.print(50)
        received = []
        while True:
            data = self.transport.drain()
            if not data:
                break
            received.extend(json.loads(payload)["content"]["text"][:5] for payload in frames(data))
        self.assertEqual(received, [f"{n:05d}" for n in range(50)])
        self.assertLess(self.transport.peak, 3 * PIECE + 2 * (PIECE + 1000), "a whole backlog was handed to the transport")

    def test_past_the_bound_the_client_is_closed_with_1008(self) -> None:
        """A client that reads nothing while more than --max-client-backlog waits for it gets a 1008 close, after what was already sent."""
        self.print(1200)  # 12 MB: past the 10 MiB bound
        opcode, last = opcodes_and_frames(self.transport.drain())[-1]
        self.assertEqual((opcode, struct.unpack("!H", last[:2])[0]), (0x8, 1008))
        self.assertIn(b"client not reading", last)

    def test_output_is_framed_once_for_all_connections(self) -> None:
        """Two connections of a kernel are written the same frame object: a message is encoded (and its output
        copied) once, whatever the number of connections."""
        other = self.connect("other")
        self.print(1)
        self.assertEqual(frames(self.transport.value()), frames(other.value()))
        self.assertIs(self.transport.writes[-1], other.writes[-1])

    def test_a_buffered_message_does_not_keep_the_frame_made_for_live_connections(self) -> None:
        """A session away while another one is connected buffers the message alone, not a second copy as a frame."""
        sessions = self.channels.sessions(self.kernel)
        connection = Gone()
        away = sessions.connect(connection, "away")
        sessions.disconnect(away, connection)
        self.print(1)
        assert away.buffer is not None
        (kept,) = [entry for entry in away.buffer.drain() if entry.message.msg_type == "stream"]
        # The key ChannelsProtocol.send_message caches a legacy iopub frame under: nothing cached is left.
        self.assertEqual(kept.message.derived(("ws", "iopub", False), lambda: "made again"), "made again")
        self.assertEqual(len(frames(self.transport.value())), 1, "the live connection got its frame")


class Gone:
    """A connection (``channel_sessions.Connection``) that is about to close."""

    def deliver(self, channel: str, message: Any) -> None:
        pass

    def end(self, code: int, reason: str) -> None:
        pass
