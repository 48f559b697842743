"""The channels WebSocket without a network: its Autobahn options, frame headers and TCP_NODELAY."""

from __future__ import annotations

import struct

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from kgd.options import default_config
from kgd.personalities.jupyter_websocket.personality import JupyterWebsocketPersonality
from kgd.personalities.jupyter_websocket.ws_channels import (
    OPCODE_BINARY,
    OPCODE_TEXT,
    ChannelsFactory,
    ChannelsSettings,
    frame_header,
)
from kgd.service import personality_settings


class SettingsTests(unittest.TestCase):
    """The options decide pings, size limits and buffering as documented."""

    def test_from_settings(self) -> None:
        """--ws-ping-interval, --max-message-size and --session-buffer-* reach the settings."""
        config = default_config(
            ws_ping_interval=5.0,
            max_message_size=2048,
            session_buffer_messages=7,
            session_buffer_bytes=4096,
            session_buffer_age=9.0,
        )
        settings = ChannelsSettings.from_settings(personality_settings(JupyterWebsocketPersonality(), config))
        self.assertEqual((settings.ping_interval, settings.max_message_size), (5.0, 2048))
        self.assertEqual((settings.buffer.messages, settings.buffer.bytes, settings.buffer.age), (7, 4096, 9.0))

    def test_ping_timeout_is_jupyter_servers(self) -> None:
        """Pongs may take max(3 x interval, 30 s), as in Jupyter Server; interval 0 turns pings off."""
        self.assertEqual(ChannelsSettings(ping_interval=30).protocol_options()["autoPingTimeout"], 90)
        self.assertEqual(ChannelsSettings(ping_interval=2).protocol_options()["autoPingTimeout"], 30)
        off = ChannelsSettings(ping_interval=0).protocol_options()
        self.assertEqual((off["autoPingInterval"], off["autoPingTimeout"]), (0, 0))

    def test_hot_path_options(self) -> None:
        """Nagle is off, errors close with a code rather than a dropped connection, the size limit is set."""
        options = ChannelsSettings(max_message_size=1234).protocol_options()
        self.assertTrue(options["tcpNoDelay"])
        self.assertFalse(options["failByDrop"])
        self.assertEqual((options["maxMessagePayloadSize"], options["maxFramePayloadSize"]), (1234, 1234))


class FrameTests(unittest.TestCase):
    """Outgoing frames are final and unmasked, with the RFC 6455 length encodings."""

    def test_short_text(self) -> None:
        """Up to 125 bytes the length is in the second byte."""
        self.assertEqual(frame_header(OPCODE_TEXT, 5), b"\x81\x05")
        self.assertEqual(frame_header(OPCODE_TEXT, 125), b"\x81\x7d")

    def test_medium_binary(self) -> None:
        """126 to 65535 bytes use the 16-bit extended length."""
        self.assertEqual(frame_header(OPCODE_BINARY, 126), b"\x82\x7e\x00\x7e")
        self.assertEqual(frame_header(OPCODE_BINARY, 65535), b"\x82\x7e\xff\xff")

    def test_large(self) -> None:
        """From 65536 bytes on, the 64-bit extended length."""
        self.assertEqual(frame_header(OPCODE_TEXT, 65536), b"\x81\x7f" + struct.pack("!Q", 65536))


class _RecordingTransport(StringTransport):
    """A transport that remembers what TCP_NODELAY was set to."""

    no_delay: bool | None = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


class NoDelayTests(unittest.TestCase):
    """Nagle's algorithm is off on every channels connection."""

    def test_connection_sets_tcp_nodelay(self) -> None:
        """The protocol turns TCP_NODELAY on as the connection starts (Autobahn's own attempt misses)."""
        factory = ChannelsFactory(reactor=Clock())
        factory.setProtocolOptions(**ChannelsSettings().protocol_options())
        protocol = factory.buildProtocol(None)
        transport = _RecordingTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        self.assertIs(transport.no_delay, True)

    def test_unix_sockets_are_fine(self) -> None:
        """A transport without TCP options (a Unix socket) still connects."""
        protocol = ChannelsFactory(reactor=Clock()).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        self.assertTrue(protocol.transport is transport)
