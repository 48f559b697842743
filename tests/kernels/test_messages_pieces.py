"""The codec's piecewise encoders: their pieces always join to the one-bytes encoding."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from kgd.kernels import messages
from kgd.kernels.messages import RawMessage


def message(text: str, buffers: list[bytes]) -> RawMessage:
    """A stream message with ``text`` and ``buffers``, as a kernel sends it."""
    raw = messages.new_message("stream", {"name": "stdout", "text": text}, session="s")
    return RawMessage(raw.header, b'{"msg_id":"p","msg_type":"execute_request"}', b"{}", raw.content, buffers)


class PiecesTests(unittest.TestCase):
    """A vectored writer sends exactly the bytes of the joined encoders."""

    @given(st.text(), st.sampled_from(["iopub", "shell", "stdin", "control"]))
    def test_legacy_text_pieces(self, text: str, channel: str) -> None:
        """Without buffers: text-frame pieces that join to to_ws_json, the kernel's content object untouched."""
        raw = message(text, [])
        pieces, binary = messages.to_ws_legacy_pieces(channel, raw)
        self.assertFalse(binary)
        self.assertEqual(b"".join(pieces), messages.to_ws_json(channel, raw))
        self.assertTrue(any(piece is raw.content for piece in pieces))

    @given(st.text(), st.lists(st.binary(), min_size=1, max_size=4))
    def test_legacy_binary_pieces(self, text: str, buffers: list[bytes]) -> None:
        """With buffers: one binary-frame piece, the legacy binary encoding."""
        raw = message(text, buffers)
        pieces, binary = messages.to_ws_legacy_pieces("iopub", raw)
        self.assertTrue(binary)
        self.assertEqual(b"".join(pieces), messages.to_ws_legacy_binary("iopub", raw))

    @given(st.text(), st.lists(st.binary(), max_size=4))
    def test_v1_pieces(self, text: str, buffers: list[bytes]) -> None:
        """v1 pieces keep the kernel's content object and join to a frame that decodes back to the same channel and parts."""
        raw = message(text, buffers)
        pieces = messages.to_ws_v1_pieces("shell", raw)
        self.assertTrue(any(piece is raw.content for piece in pieces))
        joined = b"".join(pieces)
        channel, decoded = messages.from_ws_v1(joined)
        self.assertEqual((channel, decoded), ("shell", raw))
