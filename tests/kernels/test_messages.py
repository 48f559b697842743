"""Tests for kgd.kernels.messages, the Jupyter wire-format codec.

Layouts are checked against the reference implementations rather than
against our own reading of them: jupyter_client's Session for ZeroMQ framing
and signatures, and jupyter_server's websocket (de)serializers for the
browser-facing formats. Property tests cover round trips over arbitrary JSON
and buffers, and fuzz the decoders that face untrusted clients.
"""

import hashlib
import hmac
import json
import struct
from dataclasses import replace
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client import protocol_version
from jupyter_client.session import Session
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.messages import (
    CHANNELS,
    CLIENT_CHANNELS,
    DELIMITER,
    V1_SUBPROTOCOL,
    BadSignature,
    MalformedMessage,
    RawMessage,
    Signer,
    from_ws_json,
    from_ws_legacy_binary,
    from_ws_v1,
    from_zmq,
    new_message,
    parse_json_part,
    part_contains,
    to_ws_json,
    to_ws_legacy_binary,
    to_ws_legacy_pieces,
    to_ws_v1_pieces,
    to_zmq,
)


def to_ws_legacy(channel: str, message: RawMessage) -> tuple[bytes, bool]:
    """The legacy frame as the gateway sends it: its pieces joined, and whether it is binary."""
    pieces, binary = to_ws_legacy_pieces(channel, message)
    return b"".join(pieces), binary


def to_ws_v1(channel: str, message: RawMessage) -> bytes:
    """The v1 frame as the gateway sends it: its pieces joined."""
    return b"".join(to_ws_v1_pieces(channel, message))

try:
    from jupyter_server.services.kernels.connection.base import (
        deserialize_binary_message,
        deserialize_msg_from_ws_v1,
        serialize_binary_message,
        serialize_msg_to_ws_v1,
    )
    from jupyter_server.services.kernels.connection.channels import (
        ZMQChannelsWebsocketConnection,
    )
except ImportError:
    JUPYTER_SERVER_MISSING = "jupyter_server (the reference oracle) is not installed"
else:
    JUPYTER_SERVER_MISSING = None



def oracle(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test that uses jupyter_server as oracle; trial skips it without one."""
    test.skip = JUPYTER_SERVER_MISSING  # type: ignore[attr-defined]
    return test


KEY = b"0123456789abcdef-kernel-key"
PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def raw(
    msg_type: str = "execute_request",
    content: bytes = b'{"code":"1+1"}',
    buffers: list[bytes] | None = None,
    parent_header: bytes = b"{}",
) -> RawMessage:
    """A small message with a fixed header, for tests that need just one."""
    header = json.dumps({"msg_id": "id-1", "msg_type": msg_type, "session": "s"}).encode()
    return RawMessage(header, parent_header, b"{}", content, buffers or [])


def compact(value: Any) -> bytes:
    """Encode JSON the way the codec re-encodes client-supplied parts."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def v1_frame(parts: list[bytes], count: int | None = None, offsets: list[int] | None = None) -> bytes:
    """Assemble a v1 frame by hand, optionally with a forged table."""
    if offsets is None:
        offsets = [8 * (len(parts) + 2)]
        for part in parts:
            offsets.append(offsets[-1] + len(part))
    if count is None:
        count = len(offsets)
    return struct.pack(f"<{1 + len(offsets)}Q", count, *offsets) + b"".join(parts)


def legacy_frame(parts: list[bytes], count: int | None = None, starts: list[int] | None = None) -> bytes:
    """Assemble a legacy binary frame by hand, optionally with a forged table."""
    if starts is None:
        starts = [4 * (len(parts) + 1)]
        for part in parts[:-1]:
            starts.append(starts[-1] + len(part))
    if count is None:
        count = len(starts)
    return struct.pack(f">{1 + len(starts)}I", count, *starts) + b"".join(parts)


V1_PARTS = [
    b"shell",
    b'{"msg_id":"a","msg_type":"execute_request"}',
    b"{}",
    b"{}",
    b'{"code":"x"}',
]

# Strategies.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=5)
headers = st.builds(
    lambda extra, msg_id, msg_type: {**extra, "msg_id": msg_id, "msg_type": msg_type},
    json_objects,
    st.text(),
    st.text(),
)
buffer_lists = st.lists(st.binary(max_size=64), max_size=4)


@st.composite
def messages(draw: st.DrawFn) -> tuple[dict[str, Any], RawMessage]:
    """A message as dicts plus the RawMessage holding their compact encoding."""
    parts = {
        "header": draw(headers),
        "parent_header": draw(st.one_of(st.just({}), headers)),
        "metadata": draw(json_objects),
        "content": draw(json_objects),
    }
    message = RawMessage(
        compact(parts["header"]),
        compact(parts["parent_header"]),
        compact(parts["metadata"]),
        compact(parts["content"]),
        draw(buffer_lists),
    )
    return parts, message


client_channels = st.sampled_from(sorted(CLIENT_CHANNELS))


class ConstantsTests(SynchronousTestCase):
    """The protocol constants callers match against."""

    def test_values(self) -> None:
        """Delimiter, subprotocol name and channel sets are Jupyter's."""
        self.assertEqual(DELIMITER, b"<IDS|MSG>")
        self.assertEqual(V1_SUBPROTOCOL, "v1.kernel.websocket.jupyter.org")
        self.assertEqual(CHANNELS, {"shell", "control", "stdin", "iopub"})
        self.assertEqual(CLIENT_CHANNELS, {"shell", "control", "stdin"})

    def test_bad_signature_is_malformed(self) -> None:
        """Callers that only catch MalformedMessage also catch BadSignature."""
        self.assertTrue(issubclass(BadSignature, MalformedMessage))
        self.assertTrue(issubclass(MalformedMessage, ValueError))


class RawMessageTests(SynchronousTestCase):
    """Header parsing at construction and lazy parent access."""

    def test_header_fields(self) -> None:
        """msg_id and msg_type come from the header without touching content."""
        message = raw(msg_type="kernel_info_request", content=b"not json at all")
        self.assertEqual((message.msg_id, message.msg_type), ("id-1", "kernel_info_request"))

    def test_bad_headers_rejected(self) -> None:
        """A header that is not an object with string msg_id/msg_type is malformed."""
        for header in [
            b"",
            b"[]",
            b"{",
            b'{"msg_id":"a"}',
            b'{"msg_type":"a"}',
            b'{"msg_id":1,"msg_type":"a"}',
            b'{"msg_id":"a","msg_type":null}',
            b'{"msg_id":"\xff","msg_type":"a"}',
        ]:
            with self.assertRaises(MalformedMessage, msg=header):
                RawMessage(header, b"{}", b"{}", b"{}", [])

    def test_parent_fields(self) -> None:
        """parent_msg_id/parent_msg_type come from the parent header."""
        message = raw(parent_header=b'{"msg_id":"p-1","msg_type":"execute_request"}')
        self.assertEqual(message.parent_msg_id, "p-1")
        self.assertEqual(message.parent_msg_type, "execute_request")

    def test_no_parent(self) -> None:
        """An empty, partial or non-object parent header reads as no parent."""
        for parent in [b"{}", b'{"msg_id":"p"}', b"null", b"garbage", b'{"msg_id":5}']:
            message = raw(parent_header=parent)
            expected_id = "p" if parent == b'{"msg_id":"p"}' else ""
            self.assertEqual((message.parent_msg_id, message.parent_msg_type), (expected_id, ""))

    def test_frozen_and_replace(self) -> None:
        """Parts cannot be reassigned; replace() re-derives the header fields."""
        message = raw()
        with self.assertRaises(AttributeError):
            message.header = b"{}"  # type: ignore[misc]
        changed = replace(message, header=b'{"msg_id":"n","msg_type":"t"}')
        self.assertEqual((changed.msg_id, changed.msg_type), ("n", "t"))
        self.assertEqual(changed.content, message.content)

    def test_equality_by_parts(self) -> None:
        """Two messages with equal parts are equal."""
        self.assertEqual(raw(buffers=[b"x"]), raw(buffers=[b"x"]))
        self.assertNotEqual(raw(buffers=[b"x"]), raw(buffers=[b"y"]))


class ParseJsonPartTests(SynchronousTestCase):
    """parse_json_part, for callers peeking into passed-through parts."""

    def test_object(self) -> None:
        """A JSON object part parses to a dict."""
        self.assertEqual(parse_json_part(b'{"execution_state":"idle"}'), {"execution_state": "idle"})

    def test_rejects(self) -> None:
        """Non-objects, invalid JSON, non-UTF-8 and NaN are MalformedMessage."""
        for part in [b"[1]", b"1", b"{", b"\xff\xfe{}", b'{"a":NaN}', b'{"a":-Infinity}']:
            with self.assertRaises(MalformedMessage, msg=part):
                parse_json_part(part)

    def test_views(self) -> None:
        """A memoryview part (a large ZeroMQ frame) parses and is rejected like bytes."""
        self.assertEqual(parse_json_part(memoryview(b'{"a":"\xc3\xa9"}')), {"a": "é"})
        self.assertRaises(MalformedMessage, parse_json_part, memoryview(b"\xff{}"))

    def test_part_contains(self) -> None:
        """part_contains finds a byte sequence in bytes and in views (where ``in`` would not)."""
        for part in (b'{"execution_state":"idle"}', memoryview(b'{"execution_state":"idle"}')):
            self.assertTrue(part_contains(part, b'"idle"'))
            self.assertFalse(part_contains(part, b'"dead"'))


class SignerTests(SynchronousTestCase):
    """HMAC-SHA256 signing as Jupyter kernels do it."""

    def test_known_digest(self) -> None:
        """The signature is the hex HMAC-SHA256 of the concatenated four parts."""
        parts = [b'{"msg_id":"a","msg_type":"b"}', b"{}", b"{}", b'{"x":1}']
        expected = hmac.new(KEY, b"".join(parts), hashlib.sha256).hexdigest().encode()
        self.assertEqual(Signer(KEY).sign(parts), expected)
        self.assertTrue(Signer(KEY).verify(expected, parts))

    def test_verify_rejects(self) -> None:
        """Wrong, truncated and empty signatures fail; so does another key."""
        parts = [b"a", b"b", b"c", b"d"]
        signature = Signer(KEY).sign(parts)
        self.assertFalse(Signer(KEY).verify(signature[:-1], parts))
        self.assertFalse(Signer(KEY).verify(b"", parts))
        self.assertFalse(Signer(KEY).verify(signature, [b"a", b"b", b"c", b"e"]))
        self.assertFalse(Signer(b"other").verify(signature, parts))

    def test_empty_key_disables(self) -> None:
        """With an empty key signatures are empty and anything verifies."""
        signer = Signer(b"")
        self.assertEqual(signer.sign([b"a", b"b", b"c", b"d"]), b"")
        self.assertTrue(signer.verify(b"bogus", [b"a", b"b", b"c", b"d"]))


class ZmqTests(SynchronousTestCase):
    """ZeroMQ multipart framing, checked against jupyter_client's Session."""

    def session_frames(self, key: bytes = KEY, buffers: list[bytes] | None = None) -> tuple[Session, list[bytes]]:
        """A reply as a kernel's Session would put it on the wire."""
        session = Session(key=key, signature_scheme="hmac-sha256")
        request = session.msg("execute_request", {"code": "é"})
        reply = session.msg("execute_reply", {"status": "ok", "ü": [1, 2.5]}, parent=request)
        frames = session.serialize(reply, ident=[b"route-1", b"route-2"])
        return session, frames + (buffers or [])

    def test_from_session(self) -> None:
        """A Session-serialized message decodes with identities stripped, parts verbatim."""
        session, frames = self.session_frames(buffers=[b"\x00buf", b""])
        message = from_zmq(frames, Signer(KEY))
        start = frames.index(DELIMITER) + 2
        self.assertEqual(
            [message.header, message.parent_header, message.metadata, message.content],
            frames[start : start + 4],
        )
        self.assertEqual(message.buffers, [b"\x00buf", b""])
        expected = session.deserialize(frames[start - 1 :])
        self.assertEqual(message.msg_id, expected["msg_id"])
        self.assertEqual(message.msg_type, "execute_reply")
        self.assertEqual(message.parent_msg_id, expected["parent_header"]["msg_id"])
        self.assertEqual(message.parent_msg_type, "execute_request")

    def test_to_session(self) -> None:
        """to_zmq output deserializes with Session under the same key."""
        session, frames = self.session_frames()
        message = replace(from_zmq(frames, Signer(KEY)), buffers=[b"b1", b""])
        out = to_zmq(message, Signer(KEY))
        self.assertEqual(out[0], DELIMITER)
        decoded = session.deserialize(out[1:])
        self.assertEqual(decoded["msg_id"], message.msg_id)
        self.assertEqual(decoded["content"], {"status": "ok", "ü": [1, 2.5]})
        self.assertEqual([bytes(b) for b in decoded["buffers"]], [b"b1", b""])

    def test_tampering(self) -> None:
        """Changing any signed frame, or the signature, raises BadSignature."""
        _, frames = self.session_frames()
        signature_index = frames.index(DELIMITER) + 1
        for index in range(signature_index, signature_index + 5):
            tampered = list(frames)
            tampered[index] = tampered[index][:-1] + b" "
            with self.assertRaises(BadSignature, msg=index):
                from_zmq(tampered, Signer(KEY))

    def test_wrong_key(self) -> None:
        """A message signed with another key raises BadSignature."""
        _, frames = self.session_frames(key=b"another key")
        self.assertRaises(BadSignature, from_zmq, frames, Signer(KEY))

    def test_unsigned_accepted_without_key(self) -> None:
        """With signing disabled on both ends, messages pass."""
        _, frames = self.session_frames(key=b"")
        self.assertEqual(from_zmq(frames, Signer(b"")).msg_type, "execute_reply")

    def test_views(self) -> None:
        """Frames as read-only views (large ZeroMQ frames) verify; content and buffers stay views, the rest is bytes."""
        session, frames = self.session_frames(buffers=[b"\x00buf"])
        views = [memoryview(frame).toreadonly() for frame in frames]
        message = from_zmq(views, Signer(KEY))
        self.assertEqual(message, from_zmq(frames, Signer(KEY)))
        for part in (message.header, message.parent_header, message.metadata):
            self.assertIs(type(part), bytes)
        self.assertIsInstance(message.content, memoryview)
        self.assertIsInstance(message.buffers[0], memoryview)
        tampered = list(views)
        tampered[-2] = memoryview(bytes(frames[-2])[:-1] + b" ")
        self.assertRaises(BadSignature, from_zmq, tampered, Signer(KEY))

    def test_buffers_unsigned(self) -> None:
        """Buffers are outside the HMAC, as in Jupyter; they pass unchanged."""
        _, frames = self.session_frames(buffers=[b"one"])
        self.assertEqual(from_zmq(frames[:-1] + [b"two"], Signer(KEY)).buffers, [b"two"])

    def test_malformed(self) -> None:
        """No delimiter, too few frames or a bad header are MalformedMessage, not BadSignature."""
        _, frames = self.session_frames()
        start = frames.index(DELIMITER)
        cases = [
            frames[:start] + frames[start + 1 :],
            frames[:-1],
            [DELIMITER],
        ]
        for frames_case in cases:
            with self.assertRaises(MalformedMessage) as caught:
                from_zmq(frames_case, Signer(KEY))
            self.assertNotIsInstance(caught.exception, BadSignature)
        unsigned_bad_header = [DELIMITER, b"", b"{}", b"{}", b"{}", b"{}"]
        self.assertRaises(MalformedMessage, from_zmq, unsigned_bad_header, Signer(b""))

    @PROPERTIES
    @given(messages(), st.lists(st.binary(max_size=8).filter(lambda b: b != DELIMITER), max_size=3), st.binary(max_size=16))
    def test_round_trip(self, sample: tuple[dict[str, Any], RawMessage], idents: list[bytes], key: bytes) -> None:
        """from_zmq(idents + to_zmq(m)) == m for any message, identities and key."""
        _, message = sample
        signer = Signer(key)
        self.assertEqual(from_zmq(idents + to_zmq(message, signer), signer), message)


class WsJsonOutTests(SynchronousTestCase):
    """Legacy text frames to clients."""

    def test_layout(self) -> None:
        """The frame is valid JSON with ids and channel at top level and parts verbatim."""
        content = b'{ "z" : 1,  "a":"\xc3\xa9" }'
        frame = to_ws_json("iopub", raw(content=content))
        self.assertIn(b'"content":' + content, frame)
        decoded = json.loads(frame.decode("utf-8"))
        self.assertEqual(
            list(decoded),
            ["header", "msg_id", "msg_type", "parent_header", "metadata", "content", "buffers", "channel"],
        )
        self.assertEqual(decoded["msg_id"], "id-1")
        self.assertEqual(decoded["msg_type"], "execute_request")
        self.assertEqual(decoded["channel"], "iopub")
        self.assertEqual(decoded["buffers"], [])
        self.assertEqual(decoded["content"], {"z": 1, "a": "é"})

    def test_surrogate_ids(self) -> None:
        """Ids holding a lone surrogate (legal as a JSON escape) still splice validly."""
        message = RawMessage(b'{"msg_id":"\\ud800","msg_type":"t"}', b"{}", b"{}", b"{}", [])
        self.assertEqual(json.loads(to_ws_json("shell", message))["msg_id"], "\ud800")

    def test_buffers_refused(self) -> None:
        """A message with buffers cannot become a text frame."""
        self.assertRaises(ValueError, to_ws_json, "iopub", raw(buffers=[b"x"]))

    def test_legacy_choice(self) -> None:
        """to_ws_legacy uses text without buffers and binary with them."""
        self.assertEqual(to_ws_legacy("iopub", raw()), (to_ws_json("iopub", raw()), False))
        with_buffers = raw(buffers=[b"x"])
        self.assertEqual(
            to_ws_legacy("iopub", with_buffers), (to_ws_legacy_binary("iopub", with_buffers), True)
        )

    @oracle
    def test_matches_jupyter_server(self) -> None:
        """The frame decodes to what Jupyter Server's own reply serializer sends."""
        session = Session(key=KEY)
        frames = session.serialize(session.msg("stream", {"name": "stdout", "text": "ö\n"}))
        reference = ZMQChannelsWebsocketConnection._reserialize_reply(
            None, session.deserialize(frames[1:]), channel="iopub"  # type: ignore[arg-type]
        )
        ours = to_ws_json("iopub", from_zmq(frames, Signer(KEY)))
        self.assertEqual(json.loads(ours), json.loads(reference))

    @PROPERTIES
    @given(messages(), st.sampled_from(sorted(CHANNELS)))
    def test_round_trip(self, sample: tuple[dict[str, Any], RawMessage], channel: str) -> None:
        """json.loads of the frame gives back the original dicts and ids."""
        parts, message = sample
        message = replace(message, buffers=[])
        decoded = json.loads(to_ws_json(channel, message).decode("utf-8"))
        for name, value in parts.items():
            self.assertEqual(decoded[name], value)
        self.assertEqual(decoded["msg_id"], parts["header"]["msg_id"])
        self.assertEqual(decoded["msg_type"], parts["header"]["msg_type"])
        self.assertEqual(decoded["channel"], channel)


class WsJsonInTests(SynchronousTestCase):
    """Legacy text frames from clients."""

    def test_jupyterlab_request(self) -> None:
        """A JupyterLab-style request decodes to compact UTF-8 parts and its channel."""
        text = json.dumps(
            {
                "header": {"msg_id": "m", "msg_type": "execute_request", "session": "s", "date": ""},
                "parent_header": {},
                "metadata": {"deletedCells": []},
                "content": {"code": "print('héllo')", "silent": False},
                "buffers": [],
                "channel": "shell",
            },
            indent=2,
        )
        channel, message = from_ws_json(text)
        self.assertEqual(channel, "shell")
        self.assertEqual(message.msg_type, "execute_request")
        self.assertEqual(message.content, "{\"code\":\"print('héllo')\",\"silent\":false}".encode())
        self.assertEqual(message.metadata, b'{"deletedCells":[]}')
        self.assertEqual(message.buffers, [])

    def test_defaults(self) -> None:
        """Missing or null channel means shell; missing or null parts mean {}."""
        for extra in [{}, {"channel": None, "parent_header": None, "metadata": None, "content": None}]:
            channel, message = from_ws_json(
                json.dumps({"header": {"msg_id": "a", "msg_type": "b"}, **extra}).encode()
            )
            self.assertEqual(channel, "shell")
            self.assertEqual((message.parent_header, message.metadata, message.content), (b"{}", b"{}", b"{}"))

    def test_gateway_client_frames(self) -> None:
        """The execute_request Enterprise Gateway's and the kernel_gateway_demos'
        Python clients send (with "buffers": {}) reaches the kernel unchanged."""
        frame = {
            "header": {
                "username": "",
                "version": "5.0",
                "session": "",
                "msg_id": "5f3c7a9e",
                "msg_type": "execute_request",
            },
            "parent_header": {},
            "channel": "shell",
            "content": {
                "code": "print('hello world')",
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
            },
            "metadata": {},
            "buffers": {},
        }
        channel, message = from_ws_json(json.dumps(frame))
        self.assertEqual((channel, message.msg_id, message.msg_type), ("shell", "5f3c7a9e", "execute_request"))
        self.assertEqual(json.loads(message.header), frame["header"])
        self.assertEqual(json.loads(message.content), frame["content"])
        self.assertEqual(message.buffers, [])

    def test_empty_buffers(self) -> None:
        """Every empty "buffers" ({}, [], null, absent) is accepted as no buffers."""
        header = {"msg_id": "a", "msg_type": "b"}
        for extra in [{}, {"buffers": None}, {"buffers": []}, {"buffers": {}}]:
            self.assertEqual(from_ws_json(json.dumps({"header": header, **extra}))[1].buffers, [])

    def test_ids_at_either_level(self) -> None:
        """msg_id and msg_type may sit only at the top level or only in the
        header; a header without date, version or username is kept as sent."""
        cases = [
            ({"msg_id": "a", "msg_type": "b", "header": {"session": "s"}}, {"session": "s", "msg_id": "a", "msg_type": "b"}),
            ({"msg_id": "a", "msg_type": "b"}, {"msg_id": "a", "msg_type": "b"}),
            ({"msg_id": "a", "msg_type": "b", "header": None}, {"msg_id": "a", "msg_type": "b"}),
            ({"msg_type": "b", "header": {"msg_id": "a"}}, {"msg_id": "a", "msg_type": "b"}),
            ({"msg_id": "top", "msg_type": "b", "header": {"msg_id": "a"}}, {"msg_id": "a", "msg_type": "b"}),
        ]
        for frame, header in cases:
            _, message = from_ws_json(json.dumps({**frame, "parent_header": None}))
            self.assertEqual(json.loads(message.header), header)
            self.assertEqual(message.parent_header, b"{}")

    def test_jupyter_client_session_message(self) -> None:
        """A message built by jupyter_client's Session.msg (datetime date,
        top-level msg_id/msg_type duplicated) decodes with its header intact."""
        session = Session(key=KEY)
        msg = session.msg("kernel_info_request")
        text = json.dumps({**msg, "channel": "shell", "buffers": []}, default=str)
        channel, message = from_ws_json(text)
        self.assertEqual((channel, message.msg_id, message.msg_type), ("shell", msg["msg_id"], "kernel_info_request"))

    def test_client_channels(self) -> None:
        """Each client channel is accepted and returned."""
        for name in CLIENT_CHANNELS:
            text = json.dumps({"header": {"msg_id": "a", "msg_type": "b"}, "channel": name})
            self.assertEqual(from_ws_json(text)[0], name)

    def test_rejects(self) -> None:
        """Every malformation named in the protocol raises MalformedMessage."""
        header = {"msg_id": "a", "msg_type": "b"}
        cases: list[bytes | str] = [
            b"",
            b"not json",
            b"[]",
            b"\xff{}",
            "\ufeff{}",
            json.dumps({"channel": "shell"}),
            json.dumps({"header": "x"}),
            json.dumps({"header": {"msg_id": "a"}}),
            json.dumps({"header": {"msg_id": "a", "msg_type": 3}}),
            json.dumps({"header": header, "channel": "iopub"}),
            json.dumps({"header": header, "channel": "hb"}),
            json.dumps({"header": header, "channel": 1}),
            json.dumps({"header": header, "content": []}),
            json.dumps({"header": header, "metadata": "x"}),
            json.dumps({"header": header, "parent_header": 0}),
            json.dumps({"header": header, "buffers": ["AAAA"]}),
            json.dumps({"header": header, "buffers": {"0": "AAAA"}}),
            json.dumps({"header": header, "buffers": "x"}),
            json.dumps({"msg_id": "a", "msg_type": "b", "header": []}),
            '{"header":{"msg_id":"a","msg_type":"b"},"content":{"x":NaN}}',
            '{"header":{"msg_id":"a","msg_type":"b"},"content":{"x":"\\udc00"}}',
            '{"header":{"msg_id":"\\ud800","msg_type":"b"}}',
            '{"header":{"msg_id":"a","msg_type":"b"},"content":{"x":' + "9" * 5000 + "}}",
            '{"header":{"msg_id":"a","msg_type":"b"},"content":' + "[" * 100_000 + "]" * 100_000 + "}",
        ]
        for text in cases:
            with self.assertRaises(MalformedMessage, msg=text[:80]):
                from_ws_json(text)

    @PROPERTIES
    @given(messages(), client_channels)
    def test_round_trip(self, sample: tuple[dict[str, Any], RawMessage], channel: str) -> None:
        """from_ws_json(to_ws_json(m)) returns m and its channel."""
        _, message = sample
        message = replace(message, buffers=[])
        self.assertEqual(from_ws_json(to_ws_json(channel, message)), (channel, message))

    @FUZZ
    @given(st.one_of(st.binary(), st.text()))
    def test_fuzz_text(self, data: bytes | str) -> None:
        """Arbitrary input raises nothing but MalformedMessage."""
        try:
            from_ws_json(data)
        except MalformedMessage:
            pass

    @FUZZ
    @given(st.dictionaries(st.sampled_from(["header", "parent_header", "metadata", "content", "channel", "buffers"]), json_values | headers))
    def test_fuzz_structure(self, value: dict[str, Any]) -> None:
        """Any JSON object with protocol keys either decodes consistently or is MalformedMessage."""
        try:
            channel, message = from_ws_json(json.dumps(value))
        except MalformedMessage:
            return
        self.assertIn(channel, CLIENT_CHANNELS)
        self.assertEqual(message.msg_id, value["header"]["msg_id"])


class WsLegacyBinaryTests(SynchronousTestCase):
    """Legacy binary frames, both directions."""

    def test_layout(self) -> None:
        """Big-endian count and starts, then the JSON without buffers, then buffers."""
        frame = to_ws_legacy_binary("iopub", raw(buffers=[b"AB", b""]))
        count, first, second, third = struct.unpack_from(">4I", frame)
        self.assertEqual((count, first), (3, 16))
        decoded = json.loads(frame[first:second])
        self.assertNotIn("buffers", decoded)
        self.assertEqual(decoded["channel"], "iopub")
        self.assertEqual(decoded["msg_id"], "id-1")
        self.assertEqual((frame[second:third], frame[third:]), (b"AB", b""))

    @oracle
    def test_decodes_with_jupyter_server(self) -> None:
        """jupyter_server's deserialize_binary_message reads our frames."""
        message = raw(content='{"data":"ø"}'.encode(), buffers=[b"\x00\x01", b"", b"x" * 1000])
        decoded = deserialize_binary_message(to_ws_legacy_binary("iopub", message))
        self.assertEqual(decoded["channel"], "iopub")
        self.assertEqual(decoded["msg_type"], "execute_request")
        self.assertEqual(decoded["content"], {"data": "ø"})
        self.assertEqual(decoded["buffers"], [b"\x00\x01", b"", b"x" * 1000])

    @oracle
    def test_reads_jupyter_server(self) -> None:
        """Frames from jupyter_server's serialize_binary_message (the client layout) decode."""
        session = Session()
        message = session.msg("comm_msg", {"comm_id": "c", "data": {"é": 1}})
        message.update(channel="shell", buffers=[b"\xffbinary", b""])
        channel, decoded = from_ws_legacy_binary(serialize_binary_message(message))
        self.assertEqual(channel, "shell")
        self.assertEqual(decoded.msg_id, message["msg_id"])
        self.assertEqual(parse_json_part(decoded.content), {"comm_id": "c", "data": {"é": 1}})
        self.assertEqual(decoded.buffers, [b"\xffbinary", b""])

    def test_no_buffers(self) -> None:
        """A single-part frame (JSON only) is accepted and has no buffers."""
        json_part = b'{"header":{"msg_id":"a","msg_type":"b"},"channel":"control"}'
        channel, message = from_ws_legacy_binary(legacy_frame([json_part]))
        self.assertEqual((channel, message.buffers), ("control", []))

    def test_json_buffers_key_ignored(self) -> None:
        """A "buffers" key inside the JSON is ignored; the binary parts win."""
        json_part = b'{"header":{"msg_id":"a","msg_type":"b"},"buffers":[1,2]}'
        self.assertEqual(from_ws_legacy_binary(legacy_frame([json_part, b"real"]))[1].buffers, [b"real"])

    def test_rejects(self) -> None:
        """Truncated tables, inconsistent starts and bad JSON are MalformedMessage."""
        good_json = b'{"header":{"msg_id":"a","msg_type":"b"}}'
        good = legacy_frame([good_json, b"buf"])
        cases = [
            b"",
            b"\x00\x00\x00",
            struct.pack(">I", 0) + good_json,
            good[:8],
            legacy_frame([good_json, b"buf"], count=50),
            legacy_frame([good_json, b"buf"], starts=[8, 12]),
            legacy_frame([good_json, b"buf"], starts=[12, 11]),
            legacy_frame([good_json, b"buf"], starts=[12, 12 + len(good_json) + 10]),
            legacy_frame([b"[]", b"buf"]),
            legacy_frame([b'{"header":{"msg_id":"a","msg_type":"b"},"channel":"iopub"}']),
            legacy_frame([b"\xff"]),
        ]
        for frame in cases:
            with self.assertRaises(MalformedMessage, msg=frame):
                from_ws_legacy_binary(frame)

    def test_too_large(self) -> None:
        """A part starting past 4 GiB cannot be addressed and is refused."""

        class Huge(bytes):
            """Stands in for a 4 GiB buffer without allocating one."""

            def __len__(self) -> int:
                return 2**32

        message = raw(buffers=[Huge(), b"after"])
        self.assertRaises(MalformedMessage, to_ws_legacy_binary, "iopub", message)

    @PROPERTIES
    @given(messages(), client_channels)
    def test_round_trip(self, sample: tuple[dict[str, Any], RawMessage], channel: str) -> None:
        """from_ws_legacy_binary(to_ws_legacy_binary(m)) returns m, buffers included."""
        _, message = sample
        self.assertEqual(from_ws_legacy_binary(to_ws_legacy_binary(channel, message)), (channel, message))

    @FUZZ
    @given(st.binary(max_size=256))
    def test_fuzz_bytes(self, data: bytes) -> None:
        """Arbitrary bytes raise nothing but MalformedMessage."""
        try:
            from_ws_legacy_binary(data)
        except MalformedMessage:
            pass

    @PROPERTIES
    @given(messages(), st.integers(min_value=0), st.binary(min_size=1, max_size=4), st.integers(min_value=0))
    def test_fuzz_mutated(self, sample: tuple[dict[str, Any], RawMessage], at: int, patch: bytes, cut: int) -> None:
        """Valid frames with bytes overwritten and truncated raise nothing but MalformedMessage."""
        frame = bytearray(to_ws_legacy_binary("shell", sample[1]))
        at %= len(frame)
        frame[at : at + len(patch)] = patch
        try:
            from_ws_legacy_binary(bytes(frame[: len(frame) - cut % len(frame)]))
        except MalformedMessage:
            pass


class WsV1Tests(SynchronousTestCase):
    """v1.kernel.websocket.jupyter.org frames, both directions."""

    def test_layout(self) -> None:
        """Little-endian count and offsets, then channel and parts verbatim."""
        message = raw(buffers=[b"B"])
        frame = to_ws_v1("iopub", message)
        count = int.from_bytes(frame[:8], "little")
        self.assertEqual(count, 7)
        offsets = struct.unpack_from("<7Q", frame, 8)
        self.assertEqual(offsets[0], 64)
        self.assertEqual(offsets[-1], len(frame))
        self.assertEqual(
            [frame[a:b] for a, b in zip(offsets, offsets[1:])],
            [b"iopub", message.header, b"{}", b"{}", message.content, b"B"],
        )

    @oracle
    def test_decodes_with_jupyter_server(self) -> None:
        """jupyter_server's deserialize_msg_from_ws_v1 reads our frames."""
        message = raw(content='{"é":[]}'.encode(), buffers=[b"", b"\x00" * 9])
        channel, parts = deserialize_msg_from_ws_v1(to_ws_v1("iopub", message))
        self.assertEqual(channel, "iopub")
        self.assertEqual(
            parts, [message.header, message.parent_header, message.metadata, message.content, b"", b"\x00" * 9]
        )

    @oracle
    def test_reads_jupyter_server(self) -> None:
        """Frames from jupyter_server's serialize_msg_to_ws_v1, raw and packed, decode."""
        parts = [b'{"msg_id":"a","msg_type":"comm_msg"}', b"{}", b'{"m":1}', b'{"c":"\xc3\xa9"}', b"\x01", b""]
        channel, message = from_ws_v1(serialize_msg_to_ws_v1(parts, "control"))
        self.assertEqual(channel, "control")
        self.assertEqual(
            [message.header, message.parent_header, message.metadata, message.content, *message.buffers], parts
        )
        session = Session()
        status = session.msg("interrupt_request", {})
        channel, message = from_ws_v1(serialize_msg_to_ws_v1(status, "stdin", session.pack))
        self.assertEqual((channel, message.msg_id), ("stdin", status["msg_id"]))

    def test_rejects(self) -> None:
        """Every framing defect and invalid header or channel is MalformedMessage."""
        good = v1_frame(V1_PARTS)
        offsets = list(struct.unpack_from("<6Q", good, 8))
        cases = [
            b"",
            good[:7],
            v1_frame(V1_PARTS[:4]),
            good[:40],
            good[:-1],
            good + b"\x00",
            v1_frame(V1_PARTS, count=2**64 - 1),
            v1_frame(V1_PARTS, offsets=[offsets[0] + 8, *offsets[1:]]),
            v1_frame(V1_PARTS, offsets=[offsets[0] - 8, *offsets[1:]]),
            v1_frame(V1_PARTS, offsets=[*offsets[:2], offsets[3] + 1, *offsets[3:]]),
            v1_frame(V1_PARTS, offsets=[*offsets[:2], len(good) + 5, *offsets[3:]]),
            v1_frame(V1_PARTS, offsets=[*offsets[:-1], len(good) + 1]),
            v1_frame([b"iopub", *V1_PARTS[1:]]),
            v1_frame([b"sh\xffll", *V1_PARTS[1:]]),
            v1_frame([b"", *V1_PARTS[1:]]),
            v1_frame([V1_PARTS[0], b"{}", *V1_PARTS[2:]]),
            v1_frame([V1_PARTS[0], b"[]", *V1_PARTS[2:]]),
            v1_frame([*V1_PARTS[:2], b"", *V1_PARTS[3:]]),
            v1_frame([*V1_PARTS[:3], b"[]", V1_PARTS[4]]),
            v1_frame([*V1_PARTS[:4], b'"x"']),
        ]
        self.assertEqual(from_ws_v1(good)[0], "shell")
        for frame in cases:
            with self.assertRaises(MalformedMessage, msg=frame):
                from_ws_v1(frame)

    def test_object_check_allows_whitespace(self) -> None:
        """JSON parts padded with whitespace are still accepted and kept verbatim."""
        padded = b' \n{"code":"x"}\t'
        _, message = from_ws_v1(v1_frame([*V1_PARTS[:4], padded]))
        self.assertEqual(message.content, padded)

    @PROPERTIES
    @given(messages(), client_channels)
    def test_round_trip(self, sample: tuple[dict[str, Any], RawMessage], channel: str) -> None:
        """from_ws_v1(to_ws_v1(m)) returns m, buffers included."""
        _, message = sample
        self.assertEqual(from_ws_v1(to_ws_v1(channel, message)), (channel, message))

    @FUZZ
    @given(st.binary(max_size=256))
    def test_fuzz_bytes(self, data: bytes) -> None:
        """Arbitrary bytes raise nothing but MalformedMessage."""
        try:
            from_ws_v1(data)
        except MalformedMessage:
            pass

    @PROPERTIES
    @given(messages(), st.integers(min_value=0), st.binary(min_size=1, max_size=8), st.integers(min_value=0))
    def test_fuzz_mutated(self, sample: tuple[dict[str, Any], RawMessage], at: int, patch: bytes, cut: int) -> None:
        """Valid frames with bytes overwritten and truncated raise nothing but MalformedMessage."""
        frame = bytearray(to_ws_v1("shell", sample[1]))
        at %= len(frame)
        frame[at : at + len(patch)] = patch
        try:
            from_ws_v1(bytes(frame[: len(frame) - cut % len(frame)]))
        except MalformedMessage:
            pass


class NewMessageTests(SynchronousTestCase):
    """Messages the gateway creates itself."""

    def test_status_like_jupyter_server(self) -> None:
        """An iopub status message has Jupyter Server's header fields and an empty parent."""
        message = new_message("status", {"execution_state": "restarting"}, session="sess")
        reference = Session(session="sess").msg("status", {"execution_state": "restarting"})
        header = parse_json_part(message.header)
        self.assertEqual(set(header), set(reference["header"]))
        self.assertEqual(
            {k: header[k] for k in ("msg_type", "session", "version", "username")},
            {"msg_type": "status", "session": "sess", "version": protocol_version, "username": "kgd"},
        )
        self.assertEqual(header["msg_id"], message.msg_id)
        self.assertEqual((message.parent_header, message.metadata), (b"{}", b"{}"))
        self.assertEqual(parse_json_part(message.content), {"execution_state": "restarting"})
        frame = json.loads(to_ws_json("iopub", message))
        self.assertEqual(frame["channel"], "iopub")
        self.assertEqual(frame["parent_header"], {})

    def test_unique_ids(self) -> None:
        """Each message gets a fresh msg_id."""
        ids = {new_message("kernel_info_request", {}, session="s").msg_id for _ in range(50)}
        self.assertEqual(len(ids), 50)

    def test_kernel_accepts(self) -> None:
        """A signed new request deserializes with Session, date parsed as a datetime."""
        message = new_message("shutdown_request", {"restart": True}, session="s", username="u")
        decoded = Session(key=KEY).deserialize(to_zmq(message, Signer(KEY))[1:])
        self.assertEqual(decoded["content"], {"restart": True})
        self.assertEqual(decoded["header"]["username"], "u")
        self.assertIsNotNone(decoded["header"]["date"].tzinfo)

    def test_parent(self) -> None:
        """With a parent, its header is reused verbatim as parent_header."""
        parent = raw(parent_header=b"{}")
        message = new_message("interrupt_request", {}, session="s", parent=parent)
        self.assertEqual(message.parent_header, parent.header)
        self.assertEqual(message.parent_msg_id, "id-1")
