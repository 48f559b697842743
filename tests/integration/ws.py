"""A channels WebSocket client for integration tests, on the test's own reactor.

Autobahn's Twisted client, with the frame formats decoded here independently
of ``kgd.kernels.messages`` (so a codec bug cannot hide itself): legacy JSON
text frames, legacy binary frames (big-endian u32 offsets) and
``v1.kernel.websocket.jupyter.org`` frames (little-endian u64 offsets).
Messages come out as dicts with ``channel``, ``header``, ``parent_header``,
``metadata``, ``content`` and ``buffers`` (a list of bytes).  Every wait has a
deadline; nothing sleeps.
"""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any, Callable, Sequence

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, protocol, reactor

V1 = "v1.kernel.websocket.jupyter.org"
Message = dict[str, Any]


def request(msg_type: str, content: dict[str, Any], channel: str = "shell", session: str = "test") -> Message:
    """A client message as Jupyter clients build them."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": session,
            "username": "test",
            "version": "5.3",
            "date": "2026-01-01T00:00:00.000000Z",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


def execute_request(code: str, **kwargs: Any) -> Message:
    """An execute_request for ``code`` that allows stdin."""
    content = {"code": code, "silent": False, "store_history": True, "allow_stdin": True, "stop_on_error": True}
    return request("execute_request", content, **kwargs)


def decode_legacy_binary(data: bytes) -> Message:
    """A legacy binary frame: u32 count, u32 starts, the JSON, then the buffers."""
    (count,) = struct.unpack_from(">I", data)
    starts = list(struct.unpack_from(f">{count}I", data, 4)) + [len(data)]
    parts = [data[starts[i] : starts[i + 1]] for i in range(count)]
    message = json.loads(parts[0])
    message["buffers"] = parts[1:]
    return message


def decode_v1(data: bytes) -> Message:
    """A v1 frame: u64 count, u64 offsets, channel, header, parent, metadata, content, buffers."""
    (count,) = struct.unpack_from("<Q", data)
    offsets = list(struct.unpack_from(f"<{count}Q", data, 8))
    parts = [data[offsets[i] : offsets[i + 1]] for i in range(count - 1)]
    channel, header, parent, metadata, content = parts[:5]
    return {
        "channel": channel.decode(),
        "header": json.loads(header),
        "parent_header": json.loads(parent),
        "metadata": json.loads(metadata),
        "content": json.loads(content),
        "buffers": parts[5:],
    }


def encode_v1(message: Message) -> bytes:
    """A client message as a v1 frame."""
    parts = [message["channel"].encode()] + [
        json.dumps(message[key]).encode() for key in ("header", "parent_header", "metadata", "content")
    ] + list(message.get("buffers") or [])
    count = len(parts) + 1
    offsets = [8 * (count + 1)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{count + 1}Q", count, *offsets) + b"".join(parts)


def encode_legacy_binary(message: Message) -> bytes:
    """A client message with buffers as a legacy binary frame."""
    body = {key: value for key, value in message.items() if key != "buffers"}
    parts = [json.dumps(body).encode()] + list(message["buffers"])
    starts = [4 * (len(parts) + 1)]
    for part in parts[:-1]:
        starts.append(starts[-1] + len(part))
    return struct.pack(f">{len(parts) + 1}I", len(parts), *starts) + b"".join(parts)


class _Protocol(WebSocketClientProtocol):
    def onConnect(self, response: Any) -> None:
        self.factory.connection.subprotocol = response.protocol

    def onOpen(self) -> None:
        self.factory.connection._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.connection._received(payload, isBinary)

    def onPing(self, payload: bytes) -> None:
        self.factory.connection.pings += 1
        super().onPing(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connection._closed_with(code, reason)


class ChannelsConnection:
    """One open channels WebSocket, with a queue of received messages."""

    def __init__(self) -> None:
        self.subprotocol: str | None = None
        self.messages: list[Message] = []
        self.frames: list[tuple[bytes, bool]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.pings = 0
        self.opened: defer.Deferred[ChannelsConnection] = defer.Deferred()
        self.closed: defer.Deferred[tuple[int | None, str | None]] = defer.Deferred()
        self._protocol: _Protocol | None = None
        self._waiters: list[tuple[Callable[[Message], bool], defer.Deferred[list[Message]], int]] = []

    # -- events --------------------------------------------------------------

    def _opened(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self.opened.callback(self)

    def _received(self, payload: bytes, binary: bool) -> None:
        self.frames.append((payload[:64], binary))
        if self.subprotocol == V1:
            message = decode_v1(payload)
        elif binary:
            message = decode_legacy_binary(payload)
        else:
            message = json.loads(payload)
        self.messages.append(message)
        for waiter in list(self._waiters):
            predicate, deferred, start = waiter
            if predicate(message):
                self._waiters.remove(waiter)
                deferred.callback(self.messages[start:])

    def _closed_with(self, code: int | None, reason: str | None) -> None:
        self.close_code, self.close_reason = code, reason
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"WebSocket refused or closed during the handshake ({code} {reason})"))
        if not self.closed.called:
            self.closed.callback((code, reason))
        for _, deferred, _ in self._waiters:
            deferred.errback(ConnectionError(f"WebSocket closed ({code} {reason}) while waiting"))
        self._waiters = []

    # -- use -----------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send a message in this connection's format (buffers force a binary frame in legacy)."""
        assert self._protocol is not None
        if self.subprotocol == V1:
            self._protocol.sendMessage(encode_v1(message), isBinary=True)
        elif message.get("buffers"):
            self._protocol.sendMessage(encode_legacy_binary(message), isBinary=True)
        else:
            self.send_raw(json.dumps(message).encode(), binary=False)

    def send_raw(self, payload: bytes, binary: bool) -> None:
        """Send one frame as given."""
        assert self._protocol is not None
        self._protocol.sendMessage(payload, isBinary=binary)

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 30.0, since: int | None = None) -> defer.Deferred[list[Message]]:
        """Fire with the messages from ``since`` (default: now) up to the first one matching ``predicate``."""
        start = len(self.messages) if since is None else since
        for index in range(start, len(self.messages)):
            if predicate(self.messages[index]):
                return defer.succeed(self.messages[start : index + 1])
        deferred: defer.Deferred[list[Message]] = defer.Deferred()
        if self.closed.called:
            return defer.fail(ConnectionError(f"WebSocket closed ({self.close_code} {self.close_reason})"))
        self._waiters.append((predicate, deferred, start))
        return deferred.addTimeout(timeout, reactor)

    def execute(self, code: str, timeout: float = 30.0, **kwargs: Any) -> defer.Deferred[list[Message]]:
        """Run ``code``; fire with the messages answering it, until both its ``status: idle`` and its reply came.

        Only messages whose parent is this request are kept: iopub is shared, so
        another connection's output on the same kernel may arrive meanwhile.
        """
        message = execute_request(code, **kwargs)
        msg_id = message["header"]["msg_id"]
        start = len(self.messages)
        self.send(message)
        arrived = self.wait_for(finished(message), timeout, since=start)
        return arrived.addCallback(lambda messages: [m for m in messages if m["parent_header"].get("msg_id") == msg_id])

    def close(self) -> defer.Deferred[tuple[int | None, str | None]]:
        """Close from the client side and wait for the end."""
        if self._protocol is not None and not self.closed.called:
            self._protocol.sendClose(1000)
        return self.closed


def idle_for(message: Message) -> Callable[[Message], bool]:
    """Matches the iopub ``status: idle`` that ends ``message``'s execution."""
    msg_id = message["header"]["msg_id"]
    return lambda m: (
        m["channel"] == "iopub"
        and m["header"]["msg_type"] == "status"
        and m["content"].get("execution_state") == "idle"
        and m["parent_header"].get("msg_id") == msg_id
    )


def finished(message: Message) -> Callable[[Message], bool]:
    """Matches, in a sequence of messages, the later of ``message``'s idle status and its shell reply."""
    is_idle = idle_for(message)
    msg_id = message["header"]["msg_id"]
    seen: set[str] = set()

    def predicate(m: Message) -> bool:
        if is_idle(m):
            seen.add("idle")
        elif m["channel"] == "shell" and m["parent_header"].get("msg_id") == msg_id:
            seen.add("reply")
        return len(seen) == 2

    return predicate


def of_type(msg_type: str, channel: str | None = None) -> Callable[[Message], bool]:
    """Matches a message of this type (on this channel)."""
    return lambda m: m["header"]["msg_type"] == msg_type and (channel is None or m["channel"] == channel)


def connect(
    ws_url: str,
    kernel_id: str,
    *,
    token: str = "",
    session_id: str | None = None,
    protocols: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    base: str = "/",
    timeout: float = 15.0,
) -> defer.Deferred[ChannelsConnection]:
    """Open ``{base}api/kernels/{kernel_id}/channels``; fires once the WebSocket is open."""
    query = []
    if session_id:
        query.append(f"session_id={session_id}")
    if token:
        query.append(f"token={token}")
    url = f"{ws_url}{base}api/kernels/{kernel_id}/channels" + ("?" + "&".join(query) if query else "")
    connection = ChannelsConnection()
    factory = WebSocketClientFactory(url, protocols=list(protocols) or None, headers=headers or {})
    factory.protocol = _Protocol
    factory.connection = connection
    factory.setProtocolOptions(openHandshakeTimeout=timeout, closeHandshakeTimeout=5)
    connectWS(factory, timeout=timeout)
    return connection.opened.addTimeout(timeout, reactor)


class StalledClient(protocol.Protocol):
    """Completes a WebSocket handshake, then never reads again, like a hung browser tab."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.response = b""
        self.upgraded: defer.Deferred[bytes] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.response += data
        if b"\r\n\r\n" in self.response and not self.upgraded.called:
            self.transport.pauseProducing()
            self.upgraded.callback(self.response.split(b"\r\n", 1)[0])

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)
