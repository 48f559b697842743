# Jupyter message wire formats handled here (offsets count bytes from the start
# of the frame; H, P, M, C are the JSON parts header, parent_header, metadata,
# content exactly as produced by their author; B... are binary buffers):
#
#   ZeroMQ multipart, kernel <-> gateway (one bytes object per frame; from a
#   kernel, C and B may be read-only memoryviews of ZeroMQ's message):
#     [ident..., b"<IDS|MSG>", sig, H, P, M, C, B...]
#     sig = hex(HMAC-SHA256(key, H + P + M + C)), or b"" when the key is empty;
#     buffers are not signed; idents route on ROUTER/PUB sockets and are dropped.
#
#   Legacy websocket, text frame (no subprotocol, message without buffers):
#     {"header":H,"msg_id":"..","msg_type":"..","parent_header":P,
#      "metadata":M,"content":C,"buffers":[],"channel":"iopub"}
#
#   Legacy websocket, binary frame (no subprotocol, message with buffers);
#   every integer is a big-endian u32:
#     | k | start[0] ... start[k-1] | J | B[0] | ... | B[k-2] |
#     k = 1 + len(buffers), start[0] = 4 * (k + 1), and J is the text frame
#     above without "buffers"; part i runs from start[i] to start[i + 1], the
#     last part to the end of the frame.
#
#   v1.kernel.websocket.jupyter.org, binary frame; every integer is a
#   little-endian u64:
#     | n | offset[0] ... offset[n-1] | channel | H | P | M | C | B... |
#     n = 6 + len(buffers), offset[0] = 8 * (n + 1), part i runs from offset[i]
#     to offset[i + 1], offset[n-1] is the end of the frame; channel is UTF-8.
"""Codec for Jupyter messages on the gateway's relay path.

Every message a notebook client exchanges with a kernel passes through here,
in both directions, so the codec does as little as it can: it parses the
small header (whose msg_id and msg_type the gateway needs for routing and
activity tracking) and moves content, metadata and buffers through as the
bytes they arrived as. Content is only decoded when the client used the legacy
JSON protocol, where there is no other way to get the parts out. Everything is
sans-I/O (frames in, frames out) so that the daemon owns the sockets and this
module can be tested exhaustively against the reference implementations.
"""

import hmac
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any, Callable, Hashable, NoReturn, TypeVar

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session, msg_header, new_id

DELIMITER = b"<IDS|MSG>"
V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
CHANNELS = frozenset({"shell", "control", "stdin", "iopub"})
# iopub flows kernel -> client only; a client writing to it is a protocol error.
CLIENT_CHANNELS = CHANNELS - {"iopub"}

_CLIENT_CHANNEL_BYTES = {name.encode("ascii"): name for name in CLIENT_CHANNELS}
_U32 = struct.Struct(">I")
_U64 = struct.Struct("<Q")
_U32_MAX = 0xFFFFFFFF
_JSON_WHITESPACE = b" \t\n\r"
#: A message part: bytes, or a read-only view of a large ZeroMQ frame (never copied on the relay path).
Part = bytes | memoryview
# Number of frames after the delimiter before the buffers start.
_ZMQ_FIXED_FRAMES = 5


class MalformedMessage(ValueError):
    """A frame or message does not follow the Jupyter wire protocol.

    The single argument is a short human-readable reason, meant for the log
    line written when the caller drops the message or closes the connection.
    """


class BadSignature(MalformedMessage):
    """A ZeroMQ message's HMAC does not match the kernel's key.

    Distinct from other malformations because it can mean a process that does
    not know the key is writing to the kernel's sockets.
    """


class UnknownChannel(MalformedMessage):
    """A client addressed a channel it cannot send on (iopub, or no Jupyter channel).

    Distinct so that a connection can report a policy violation rather than
    a malformed payload.
    """


def _reject_constant(name: str) -> NoReturn:
    """Refuse NaN and Infinity, which Python's json accepts but JSON does not.

    Kernels in other languages use strict parsers; forwarding these would turn
    a bad client message into a kernel-side failure.
    """
    raise MalformedMessage(f"{name} is not valid JSON")


def _loads(text: Part | str) -> Any:
    """Parse strict JSON, turning every failure into MalformedMessage.

    Bytes must be UTF-8 (the only encoding Jupyter uses; json.loads would
    otherwise guess UTF-16/32). Besides syntax errors, json.loads raises
    ValueError for integers beyond Python's digit limit and RecursionError
    for deeply nested input; both are a hostile or broken peer, not a bug.
    """
    try:
        if not isinstance(text, str):
            text = str(text, "utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except MalformedMessage:
        raise
    except UnicodeDecodeError:
        raise MalformedMessage("JSON is not valid UTF-8") from None
    except ValueError as error:
        raise MalformedMessage(f"invalid JSON: {error}") from None
    except RecursionError:
        raise MalformedMessage("JSON nested too deeply") from None


def _dumps(value: Any) -> bytes:
    """Encode a JSON part compactly as UTF-8, the way the gateway writes parts.

    json_default is jupyter_client's: it formats the header's datetime the
    way kernels do; client-supplied parts never contain non-JSON types.
    """
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=json_default
    ).encode("utf-8")


def _dumps_str(value: str) -> bytes:
    """Encode a string as a JSON literal for splicing into a frame.

    ASCII escaping makes this total: a msg_id parsed from a "\\ud800" escape
    holds a lone surrogate, which has no UTF-8 encoding but a valid escape.
    """
    return json.dumps(value).encode("ascii")


def parse_json_part(part: Part) -> dict[str, Any]:
    """Parse one JSON message part that must be an object.

    For callers that need to look inside a part the relay passes through,
    such as the execution_state of an iopub status message's content.
    Raises MalformedMessage when the part is not a JSON object.
    """
    value = _loads(part)
    if not isinstance(value, dict):
        raise MalformedMessage(f"expected a JSON object, got {type(value).__name__}")
    return value


def part_contains(part: Part, needle: bytes) -> bool:
    """Whether ``needle`` occurs in ``part``: ``in`` on a memoryview looks for one byte value, not a sequence."""
    return needle in (part if isinstance(part, bytes) else bytes(part))


def _header_ids(header: bytes) -> tuple[str, str]:
    """Return (msg_id, msg_type) of a header, validating what routing needs."""
    parsed = parse_json_part(header)
    msg_id = parsed.get("msg_id")
    msg_type = parsed.get("msg_type")
    if not isinstance(msg_id, str) or not isinstance(msg_type, str):
        raise MalformedMessage("header needs string msg_id and msg_type")
    return msg_id, msg_type


T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class RawMessage:
    """A Jupyter message whose JSON parts are kept as the bytes they arrived as.

    Relaying re-uses these bytes verbatim, so content is never decoded on the
    hot path and the kernel's exact serialization (dates included) reaches the
    client. The header is parsed once at construction: every relayed message
    needs msg_id and msg_type, and constructing a RawMessage is therefore also
    what guarantees a well-formed header (MalformedMessage otherwise). The
    parent header is parsed only if someone asks for it. Frozen because the
    derived fields would silently go stale if a part were reassigned; use
    dataclasses.replace() to build a modified message.
    """

    header: bytes
    parent_header: bytes
    metadata: bytes
    content: Part
    buffers: list[Part] = field(default_factory=list, hash=False)
    msg_id: str = field(init=False, compare=False)
    msg_type: str = field(init=False, compare=False)
    _parent_ids: tuple[str, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _derived: dict[Hashable, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Parse the header's identifying fields; rejects a malformed header."""
        msg_id, msg_type = _header_ids(self.header)
        object.__setattr__(self, "msg_id", msg_id)
        object.__setattr__(self, "msg_type", msg_type)

    def _parent(self) -> tuple[str, str]:
        """Parse (once) the parent's msg_id and msg_type.

        Unsolicited messages legitimately have an empty parent, so anything
        that does not carry the two strings counts as "no parent" (empty
        strings) rather than an error: callers use these for routing and
        activity hints, where "no parent" already has a safe meaning.
        """
        if self._parent_ids is None:
            try:
                parent = parse_json_part(self.parent_header)
            except MalformedMessage:
                parent = {}
            ids = tuple(
                value if isinstance(value := parent.get(key), str) else ""
                for key in ("msg_id", "msg_type")
            )
            object.__setattr__(self, "_parent_ids", ids)
        return self._parent_ids

    @property
    def parent_msg_id(self) -> str:
        """msg_id of the request this message answers, or "" if none."""
        return self._parent()[0]

    @property
    def parent_msg_type(self) -> str:
        """msg_type of the request this message answers, or "" if none."""
        return self._parent()[1]

    def forget_derived(self) -> None:
        """Drop what ``derived`` made: a frame shared by one fan-out must not stay with a message kept for later."""
        object.__setattr__(self, "_derived", None)

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()``, made once per message and ``key``.

        An iopub message goes to every connection of its kernel; its
        WebSocket frame in each format is the same for all of them, so it is
        encoded once (the parts are never copied, only referenced).  A
        failure is not remembered: ``make`` raises again for the next caller.
        """
        if self._derived is None:
            object.__setattr__(self, "_derived", {})
        assert self._derived is not None
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]


class Signer:
    """HMAC-SHA256 signing and verification with one kernel's key.

    Signing is delegated to jupyter_client's Session so that the digest is,
    by construction, the one kernels compute. An empty key means the kernel
    runs with authentication disabled: signatures are empty and not checked.
    """

    __slots__ = ("_session", "_enabled")

    def __init__(self, key: bytes) -> None:
        """Prepare the HMAC for ``key`` (the kernel connection file's key)."""
        self._session = Session(key=key, signature_scheme="hmac-sha256")
        self._enabled = bool(key)

    def sign(self, parts: Sequence[Part]) -> bytes:
        """Return the hex digest of header, parent, metadata and content."""
        return self._session.sign(list(parts))

    def verify(self, signature: Part, parts: Sequence[Part]) -> bool:
        """Check ``signature`` over ``parts`` in constant time."""
        if not self._enabled:
            return True
        return hmac.compare_digest(signature, self.sign(parts))


def from_zmq(frames: Sequence[Part], signer: Signer) -> RawMessage:
    """Decode a multipart message received from a kernel socket.

    Routing identities before the delimiter are dropped; the gateway's DEALER
    and SUB sockets have no use for them. Raises BadSignature when the HMAC
    does not match and MalformedMessage for any other defect. Content and
    buffers stay as they came (views of a large output are verified and framed
    without a copy); header, parent header and metadata become bytes, which
    the gateway parses and which are small.
    """
    try:
        start = frames.index(DELIMITER) + 1
    except ValueError:
        raise MalformedMessage("no <IDS|MSG> delimiter") from None
    if len(frames) - start < _ZMQ_FIXED_FRAMES:
        raise MalformedMessage("fewer than five frames after the delimiter")
    signature, header, parent_header, metadata, content = frames[start : start + _ZMQ_FIXED_FRAMES]
    if not signer.verify(signature, (header, parent_header, metadata, content)):
        raise BadSignature("HMAC signature does not match")
    return RawMessage(
        bytes(header), bytes(parent_header), bytes(metadata), content, list(frames[start + _ZMQ_FIXED_FRAMES :])
    )


def to_zmq(message: RawMessage, signer: Signer) -> list[Part]:
    """Encode a message for a kernel socket, signed with the kernel's key."""
    parts = [message.header, message.parent_header, message.metadata, message.content]
    return [DELIMITER, signer.sign(parts), *parts, *message.buffers]


def _legacy_json_pieces(channel: str, message: RawMessage, buffers_field: bytes) -> list[Part]:
    """The legacy JSON object as pieces: the raw parts between the literal glue."""
    return [
        b'{"header":',
        message.header,
        b',"msg_id":',
        _dumps_str(message.msg_id),
        b',"msg_type":',
        _dumps_str(message.msg_type),
        b',"parent_header":',
        message.parent_header,
        b',"metadata":',
        message.metadata,
        b',"content":',
        message.content,
        buffers_field,
        b',"channel":',
        _dumps_str(channel),
        b"}",
    ]


def _legacy_json(channel: str, message: RawMessage, buffers_field: bytes) -> bytes:
    """Splice the legacy JSON object from the raw parts, without re-encoding them."""
    return b"".join(_legacy_json_pieces(channel, message, buffers_field))


def to_ws_json(channel: str, message: RawMessage) -> bytes:
    """Encode a buffer-less message as a legacy-protocol text frame (UTF-8).

    Assumes the parts are UTF-8 JSON, which is what every Jupyter kernel
    sends. Raises ValueError for a message with buffers: a text frame cannot
    carry them, so choosing this format for one is the caller's bug (see
    to_ws_legacy_pieces).
    """
    if message.buffers:
        raise ValueError("a message with buffers needs a binary frame")
    return _legacy_json(channel, message, b',"buffers":[]')


def to_ws_legacy_binary(channel: str, message: RawMessage) -> bytes:
    """Encode a message as a legacy-protocol binary frame.

    Raises MalformedMessage when a part would start beyond the format's
    32-bit offsets, as the message cannot be represented in this format.
    """
    parts = [_legacy_json(channel, message, b""), *message.buffers]
    table_size = 4 * (len(parts) + 1)
    starts = list(accumulate(map(len, parts[:-1]), initial=table_size))
    if starts[-1] > _U32_MAX:
        raise MalformedMessage("message too large for legacy binary frame offsets")
    table = struct.pack(f">{len(parts) + 1}I", len(parts), *starts)
    return b"".join((table, *parts))


def to_ws_legacy_pieces(channel: str, message: RawMessage) -> tuple[list[Part], bool]:
    """Encode for a legacy-protocol client, as Jupyter Server does, in pieces.

    Returns pieces whose concatenation is the frame payload, and whether it
    must go out as a binary frame: only messages with buffers need one.

    For a writer that joins them once, into what it sends, so that
    megabytes of output are copied only there: the parts stay the kernel's
    own (views of ZeroMQ's frames, for large ones).
    """
    if not message.buffers:
        return _legacy_json_pieces(channel, message, b',"buffers":[]'), False
    return [to_ws_legacy_binary(channel, message)], True


def _optional_object(value: Any, name: str) -> bytes:
    """Encode an optional client-supplied part; missing or null means {}.

    Treating null as {} follows jupyter_client, which sends {} for a None
    parent or content.
    """
    if value is None:
        return b"{}"
    if not isinstance(value, dict):
        raise MalformedMessage(f"{name} must be a JSON object")
    return _encode_client_part(value, name)


def _encode_client_part(value: dict[str, Any], name: str) -> bytes:
    """Re-encode a part a client sent as JSON, so the kernel gets clean UTF-8.

    json.loads accepts lone surrogate escapes, which cannot be encoded to
    UTF-8, and nesting the encoder may refuse; both reject the message.
    """
    try:
        return _dumps(value)
    except UnicodeEncodeError:
        raise MalformedMessage(f"{name} contains an unpaired surrogate") from None
    except RecursionError:
        raise MalformedMessage(f"{name} nested too deeply") from None


def _client_channel(value: Any) -> str:
    """Validate the channel a client addressed; absent or null means shell.

    Defaulting to shell matches Jupyter Server, which old clients rely on.
    """
    if value is None:
        return "shell"
    if not isinstance(value, str) or value not in CLIENT_CHANNELS:
        raise UnknownChannel(f"client cannot send on channel {value!r}")
    return value


def _client_header(message: dict[str, Any]) -> dict[str, Any]:
    """Return a client message's header, completed from its top-level ids.

    Clients disagree on where msg_id and msg_type live (the header, the top
    level, or both); Jupyter Server accepts either, so a header missing one
    takes it from the top level. Other header fields pass through as sent.
    """
    header = message.get("header")
    if header is None:
        header = {}
    if not isinstance(header, dict):
        raise MalformedMessage("header must be a JSON object")
    missing = {
        key: message[key] for key in ("msg_id", "msg_type") if key not in header and key in message
    }
    return {**header, **missing} if missing else header


def _is_empty_buffers(value: Any) -> bool:
    """Whether a text frame's "buffers" field carries nothing.

    jupyter_client treats any empty container as no buffers, and some
    clients (Enterprise Gateway's, the kernel_gateway_demos') send {}.
    """
    return value is None or (isinstance(value, (list, dict)) and not value)


def _from_ws_object(message: Any, buffers: list[Part]) -> tuple[str, RawMessage]:
    """Build a RawMessage from a decoded legacy-protocol JSON object."""
    if not isinstance(message, dict):
        raise MalformedMessage("message must be a JSON object")
    channel = _client_channel(message.get("channel"))
    raw = RawMessage(
        _encode_client_part(_client_header(message), "header"),
        _optional_object(message.get("parent_header"), "parent_header"),
        _optional_object(message.get("metadata"), "metadata"),
        _optional_object(message.get("content"), "content"),
        buffers,
    )
    return channel, raw


def from_ws_json(text: bytes | str) -> tuple[str, RawMessage]:
    """Decode a legacy-protocol text frame sent by a client.

    Returns the target channel and the message. A "buffers" field must be
    absent, null or empty ([] or {}): binary data cannot travel in a text
    frame, and silently dropping it would corrupt e.g. a widget update.
    """
    message = _loads(text)
    if isinstance(message, dict) and not _is_empty_buffers(message.get("buffers")):
        raise MalformedMessage("a text frame cannot carry buffers")
    return _from_ws_object(message, [])


def _offset_table(
    data: bytes, unit: struct.Struct, frame: str, *, min_offsets: int, last_is_end: bool
) -> tuple[int, ...]:
    """The part boundaries of a binary websocket frame, checked strictly.

    Both binary formats start with a count and a table of that many offsets
    (*unit* is their integer); the first part must start right after the
    table and offsets must not decrease.  In the legacy format the table
    holds the parts' starts and the last part runs to the frame's end; in v1
    (*last_is_end*) its last entry must be the frame's end.  Returns the
    boundaries with the frame's end last, so part i is ``[b[i]:b[i + 1]]``.
    """
    size = len(data)
    if size < unit.size:
        raise MalformedMessage(f"{frame} shorter than its offset count")
    (count,) = unit.unpack_from(data)
    if count < min_offsets:
        raise MalformedMessage(f"{frame} has fewer than {min_offsets} offsets")
    table_size = unit.size * (count + 1)
    if table_size > size:
        raise MalformedMessage(f"{frame} truncated inside its offset table")
    offsets = struct.unpack_from(f"{unit.format[0]}{count}{unit.format[-1]}", data, unit.size)
    if offsets[0] != table_size:
        raise MalformedMessage(f"{frame}'s first part does not follow its offset table")
    if last_is_end:
        if offsets[-1] != size:
            raise MalformedMessage(f"{frame}'s last offset is not the frame's end")
    else:
        offsets = (*offsets, size)
    if any(start > end for start, end in pairwise(offsets)):
        raise MalformedMessage(f"{frame} offsets decrease or exceed the frame")
    return offsets


def from_ws_legacy_binary(data: bytes) -> tuple[str, RawMessage]:
    """Decode a legacy-protocol binary frame sent by a client.

    The offset table must be exactly as the format lays it out (first part
    right after the table, starts non-decreasing, within the frame); any
    "buffers" key in the JSON is ignored, as Jupyter Server overwrites it.
    """
    bounds = _offset_table(data, _U32, "binary frame", min_offsets=1, last_is_end=False)
    parts = [data[start:end] for start, end in pairwise(bounds)]
    return _from_ws_object(_loads(parts[0]), parts[1:])


def to_ws_v1_pieces(channel: str, message: RawMessage) -> list[Part]:
    """Encode as a v1-subprotocol binary frame, parts verbatim, in pieces (see to_ws_legacy_pieces)."""
    parts = [
        channel.encode("utf-8"),
        message.header,
        message.parent_header,
        message.metadata,
        message.content,
        *message.buffers,
    ]
    count = len(parts) + 1
    offsets = accumulate(map(len, parts), initial=8 * (count + 1))
    return [struct.pack(f"<{count + 1}Q", count, *offsets), *parts]


def _looks_like_object(part: bytes) -> bool:
    """Cheaply check that a part is framed like a JSON object.

    Not a parse: content can be megabytes and the kernel parses it anyway.
    It catches what a client's framing bug produces (empty, shifted or
    swapped parts) in constant time for well-formed input.
    """
    if part[:1] == b"{" and part[-1:] == b"}":
        return True
    stripped = part.strip(_JSON_WHITESPACE)
    return stripped[:1] == b"{" and stripped[-1:] == b"}"


def from_ws_v1(data: bytes) -> tuple[str, RawMessage]:
    """Decode a v1-subprotocol binary frame sent by a client.

    Bounds are checked strictly: the table must fit, the first part must
    start right after it, offsets must not decrease and the last must be the
    frame's end. The header is parsed (routing needs it and a kernel must not
    get a message without one); the other JSON parts only get the constant-
    time object check, because the kernel validates them anyway.
    """
    offsets = _offset_table(data, _U64, "v1 frame", min_offsets=6, last_is_end=True)
    raw_channel = data[offsets[0] : offsets[1]]
    channel = _CLIENT_CHANNEL_BYTES.get(raw_channel)
    if channel is None:
        raise UnknownChannel(f"client cannot send on channel {raw_channel[:32]!r}")
    header, parent_header, metadata, content, *buffers = (
        data[start:end] for start, end in pairwise(offsets[1:])
    )
    for name, part in (("parent_header", parent_header), ("metadata", metadata), ("content", content)):
        if not _looks_like_object(part):
            raise MalformedMessage(f"{name} is not a JSON object")
    return channel, RawMessage(header, parent_header, metadata, content, buffers)


def new_message(
    msg_type: str,
    content: dict[str, Any],
    *,
    session: str,
    parent: RawMessage | None = None,
    username: str = "kgd",
) -> RawMessage:
    """Create a message originating in the gateway itself.

    Used for kernel_info/shutdown/interrupt requests to kernels and for the
    iopub status messages ("restarting", "dead") Jupyter Server sends to
    clients, which have an empty parent. The header is jupyter_client's
    (same fields, date format and protocol version); ``parent``'s header is
    reused verbatim as the parent header.
    """
    header = msg_header(new_id(), msg_type, username, session)
    return RawMessage(
        header=_dumps(header),
        parent_header=b"{}" if parent is None else parent.header,
        metadata=b"{}",
        content=_dumps(content),
    )
