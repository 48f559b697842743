"""A lean channels WebSocket client speaking the v1 binary subprotocol.

Why: with the legacy JSON protocol the benchmark client has to decode every
frame as UTF-8 text and JSON-parse it, megabytes of stream text included, in
the same interpreter that keeps the time. For a 20 MB cell that client work
(tens of ms) is of the same size as the gateway's own, so it hides the
difference between gateways. This client does as little per frame as the
protocol allows, identically for every gateway:

- it speaks ``v1.kernel.websocket.jupyter.org`` (kgd and the reference both
  offer it; the handshake fails if the server does not select it), so a frame
  is an offsets table followed by the message parts, verbatim from the kernel;
- it reads frames itself from an asyncio stream (plain RFC 6455 framing, no
  extensions), with no per-frame text decoding, assembly or queueing;
- per message it parses only the small parent header (is it ours?) and header
  (msg_type); the content is parsed only for ``status`` messages. Stream
  contents are kept as zero-copy views and JSON-parsed after ``idle`` was seen,
  to count the text bytes exactly; ``ExecuteResult.idle_at`` is taken before that.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
import uuid
from time import perf_counter
from typing import Any

from websockets.speedups import apply_mask

from _gateways import Gateway
from _kernel_client import TIMEOUT_S, ExecuteResult, execute_content, new_message, set_nodelay

SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_U16 = struct.Struct(">H")
_U64BE = struct.Struct(">Q")
_U64LE = struct.Struct("<Q")
_READ_LIMIT = 64 * 1024 * 1024
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def encode_v1(channel: str, msg: dict[str, Any]) -> bytes:
    """A client message as a v1 frame payload: offsets table, then channel and the four JSON parts."""
    parts = [channel.encode(), *(json.dumps(msg[key]).encode()
                                 for key in ("header", "parent_header", "metadata", "content"))]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def split_v1(payload: bytes) -> list[memoryview]:
    """The parts of a v1 frame (channel, header, parent_header, metadata, content, buffers) as views."""
    (count,) = _U64LE.unpack_from(payload)
    offsets = struct.unpack_from(f"<{count}Q", payload, _U64LE.size)
    view = memoryview(payload)
    return [view[start:end] for start, end in zip(offsets, offsets[1:])]


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + _U16.pack(size)
    else:
        length = bytes([0x80 | 127]) + _U64BE.pack(size)
    return bytes([0x80 | opcode]) + length + mask + apply_mask(payload, mask)


class V1Channels:
    """One v1 channels WebSocket to one kernel, used for one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._session = uuid.uuid4().hex
        self._last_fin = True

    @classmethod
    async def open(cls, gateway: Gateway, kernel_id: str) -> V1Channels:
        # A limit above the largest frame: StreamReader pauses the socket whenever
        # it buffers more than twice its limit, which would stall 1 MB frames.
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", gateway.port, limit=_READ_LIMIT), TIMEOUT_S)
        set_nodelay(writer.get_extra_info("socket"))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET /api/kernels/{kernel_id}/channels HTTP/1.1", f"Host: 127.0.0.1:{gateway.port}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Protocol: {SUBPROTOCOL}",
                 *(f"{name}: {value}" for name, value in gateway.headers().items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
        status, *header_lines = response.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in header_lines if line)}
        expected_accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        if status.split()[1:2] != ["101"] or headers.get("sec-websocket-accept") != expected_accept:
            writer.close()
            raise RuntimeError(f"WebSocket upgrade refused: {status!r}")
        if headers.get("sec-websocket-protocol") != SUBPROTOCOL:
            writer.close()
            selected = headers.get("sec-websocket-protocol")
            raise RuntimeError(f"{gateway.name} did not select {SUBPROTOCOL}: {selected!r}")
        return cls(reader, writer)

    async def close(self) -> None:
        """Send a close frame, wait briefly for the server's, then close the socket."""
        try:
            self._writer.write(_client_frame(_OP_CLOSE, _U16.pack(1000)))
            await asyncio.wait_for(self._drain_until_close(), 5)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._writer.close()

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        self._writer.transport.abort()

    async def _drain_until_close(self) -> None:
        while True:
            opcode, _ = await self._frame()
            if opcode == _OP_CLOSE:
                return

    async def kernel_info(self) -> None:
        """Send kernel_info_request; return once its reply arrived."""
        await self.request("kernel_info_request", {})

    async def request(self, msg_type: str, content: dict[str, Any]) -> None:
        """Send a shell request; return once its reply (``*_reply`` on shell, for this request) arrived."""
        msg_id = self._send(new_message(msg_type, content, self._session))
        reply_type = msg_type.replace("_request", "_reply")
        while True:
            parts = await self._message()
            if parts[0] != b"shell" or json.loads(bytes(parts[2])).get("msg_id") != msg_id:
                continue
            if json.loads(bytes(parts[1]))["msg_type"] == reply_type:
                return

    async def discard_until_closed(self) -> str:
        """Read and drop every frame, answering pings, until the connection ends; say how it ended.

        An open connection has to be read even while it is idle: every
        connection to a kernel receives all its iopub messages.
        """
        try:
            while True:
                opcode, payload = await self._frame()
                if opcode == _OP_PING:
                    self._writer.write(_client_frame(_OP_PONG, payload))
                elif opcode == _OP_CLOSE:
                    code = _U16.unpack(payload[:2])[0] if len(payload) >= 2 else None
                    return f"closed by the server (code {code})"
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            return f"connection lost ({type(exc).__name__})"

    async def execute(self, code: str, exact_count: bool = True) -> ExecuteResult:
        """Send execute_request; return once iopub reports idle for it.

        With ``exact_count`` false, ``stream_bytes`` counts the stream messages'
        JSON content rather than their text, so that no client work follows idle.
        """
        msg_id = self._send(new_message("execute_request", execute_content(code), self._session))
        streams: list[memoryview] = []
        while True:
            parts = await self._message()
            if parts[0] != b"iopub" or json.loads(bytes(parts[2])).get("msg_id") != msg_id:
                continue
            msg_type = json.loads(bytes(parts[1]))["msg_type"]
            if msg_type == "stream":
                streams.append(parts[4])
            elif msg_type == "status" and json.loads(bytes(parts[4]))["execution_state"] == "idle":
                idle_at = perf_counter()
                if not exact_count:
                    return ExecuteResult(sum(len(content) for content in streams), idle_at)
                stream_bytes = sum(len(json.loads(bytes(content))["text"].encode()) for content in streams)
                return ExecuteResult(stream_bytes, idle_at)

    def _send(self, msg: dict[str, Any]) -> str:
        self._writer.write(_client_frame(_OP_BINARY, encode_v1(msg.pop("channel"), msg)))
        return msg["header"]["msg_id"]

    async def _message(self) -> list[memoryview]:
        """The next data message's parts; control frames are answered or skipped."""
        fragments: list[bytes] = []
        while True:
            opcode, payload = await asyncio.wait_for(self._frame(), TIMEOUT_S)
            if opcode == _OP_PING:
                self._writer.write(_client_frame(_OP_PONG, payload))
            elif opcode == _OP_CLOSE:
                raise ConnectionError(f"server closed the WebSocket: {bytes(payload[:2])!r}")
            elif opcode == _OP_TEXT:
                raise RuntimeError("text frame on a v1 connection")
            elif opcode in (_OP_BINARY, _OP_CONTINUATION):
                fragments.append(payload)
                if self._last_fin:
                    return split_v1(fragments[0] if len(fragments) == 1 else b"".join(fragments))

    async def _frame(self) -> tuple[int, bytes]:
        """One raw frame: (opcode, payload); records whether it was the final fragment."""
        first, second = await self._reader.readexactly(2)
        if second & 0x80:
            raise RuntimeError("server sent a masked frame")
        size = second & 0x7F
        if size == 126:
            (size,) = _U16.unpack(await self._reader.readexactly(2))
        elif size == 127:
            (size,) = _U64BE.unpack(await self._reader.readexactly(8))
        self._last_fin = bool(first & 0x80)
        return first & 0x0F, await self._reader.readexactly(size)
