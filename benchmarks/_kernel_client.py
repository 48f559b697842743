"""A minimal Jupyter client for the gateway REST API and channels WebSocket.

The same client drives kgd and the reference gateway, so differences in the
numbers come from the gateways. It speaks the legacy JSON text-frame protocol
(no subprotocol), which every gateway client supports (``_v1_client`` is the
lean v1-subprotocol client used for the throughput rows), and sets TCP_NODELAY on
its socket: without it the client's own Nagle delay would be added to the
gateway's and distort small-message round trips.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from _gateways import IPYKERNEL, Gateway

TIMEOUT_S = 60.0


def rest(gateway: Gateway, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One REST call; returns the decoded JSON body (None when empty), raises on non-2xx."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=TIMEOUT_S)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {**gateway.headers(), "Content-Type": "application/json"}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path} -> {response.status}: {data[:200]!r}")
    return json.loads(data) if data else None


def start_kernel(gateway: Gateway, kernel_name: str = IPYKERNEL) -> str:
    """POST /api/kernels; returns the kernel id."""
    return rest(gateway, "POST", "/api/kernels", {"name": kernel_name})["id"]


def delete_kernel(gateway: Gateway, kernel_id: str) -> None:
    """DELETE /api/kernels/{id}; the gateway answers once the kernel is shut down."""
    rest(gateway, "DELETE", f"/api/kernels/{kernel_id}")


def new_message(msg_type: str, content: dict[str, Any], session: str, channel: str = "shell") -> dict[str, Any]:
    """A client message in the gateway's JSON framing."""
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "", "session": session,
              "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"}
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": channel}


def execute_content(code: str) -> dict[str, Any]:
    return {"code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}


def set_nodelay(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class ExecuteResult:
    """What one execute_request produced until its iopub idle.

    ``idle_at`` is ``time.perf_counter()`` when the idle status was seen,
    taken before any post-processing, so a client may count ``stream_bytes``
    after it without that work being timed.
    """

    stream_bytes: int
    idle_at: float


class Channels:
    """One channels WebSocket to one kernel, used for one request at a time."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._session = uuid.uuid4().hex

    @classmethod
    async def open(cls, gateway: Gateway, kernel_id: str) -> Channels:
        url = f"{gateway.ws_url}/api/kernels/{kernel_id}/channels"
        ws = await asyncio.wait_for(
            connect(url, additional_headers=gateway.headers(), compression=None, max_size=None,
                    ping_interval=None, open_timeout=TIMEOUT_S),
            TIMEOUT_S)
        set_nodelay(ws.transport.get_extra_info("socket"))
        return cls(ws)

    async def close(self) -> None:
        await self._ws.close()

    async def kernel_info(self) -> dict[str, Any]:
        """Send kernel_info_request and return the matching reply."""
        request = new_message("kernel_info_request", {}, self._session)
        await self._ws.send(json.dumps(request))
        msg_id = request["header"]["msg_id"]
        while True:
            msg = await self._receive()
            if msg.get("msg_type") == "kernel_info_reply" and msg["parent_header"].get("msg_id") == msg_id:
                return msg

    async def execute(self, code: str) -> ExecuteResult:
        """Send execute_request; return once iopub reports idle for it."""
        request = new_message("execute_request", execute_content(code), self._session)
        await self._ws.send(json.dumps(request))
        msg_id = request["header"]["msg_id"]
        stream_bytes = 0
        while True:
            msg = await self._receive()
            if msg["parent_header"].get("msg_id") != msg_id or msg.get("channel") != "iopub":
                continue
            if msg["msg_type"] == "stream":
                stream_bytes += len(msg["content"]["text"].encode())
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return ExecuteResult(stream_bytes, time.perf_counter())

    async def _receive(self) -> dict[str, Any]:
        frame = await asyncio.wait_for(self._ws.recv(), TIMEOUT_S)
        if isinstance(frame, bytes):
            raise RuntimeError("binary frame received: this client only expects JSON text frames")
        return json.loads(frame)


@asynccontextmanager
async def gateway_kernel(gateway: Gateway, channels_class: Any = None,
                         kernel_name: str = IPYKERNEL) -> AsyncIterator[Any]:
    """A kernel started through ``gateway`` whose channels answered kernel_info; deleted on exit.

    ``channels_class`` is the client to open (``Channels``, the legacy JSON one,
    by default; ``_v1_client.V1Channels`` for the v1 subprotocol).
    """
    kernel_id = await asyncio.to_thread(start_kernel, gateway, kernel_name)
    try:
        channels = await (channels_class or Channels).open(gateway, kernel_id)
        try:
            await channels.kernel_info()
            yield channels
        finally:
            await channels.close()
    finally:
        await asyncio.to_thread(delete_kernel, gateway, kernel_id)


@dataclass
class StartedKernels:
    """The kernels a gateway started (their ids) and why the others did not start."""

    ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@asynccontextmanager
async def started_kernels(gateway: Gateway, count: int, kernel_name: str = IPYKERNEL,
                          parallel: int = 4) -> AsyncIterator[StartedKernels]:
    """Start ``count`` kernels through ``gateway``, ``parallel`` at a time; delete them all on exit.

    A failed start is recorded, not raised: at scale, how many start is a
    result. No channels are opened.
    """
    started = StartedKernels()
    gate = asyncio.Semaphore(parallel)

    async def start_one() -> None:
        async with gate:
            try:
                started.ids.append(await asyncio.to_thread(start_kernel, gateway, kernel_name))
            except Exception as exc:  # noqa: BLE001 - counted and reported by the caller
                started.failures.append(f"{type(exc).__name__}: {exc}")

    try:
        await asyncio.gather(*(start_one() for _ in range(count)))
        yield started
    finally:
        await _delete_kernels(gateway, started.ids, gate)


async def _delete_kernels(gateway: Gateway, kernel_ids: list[str], gate: asyncio.Semaphore) -> None:
    """Delete every kernel in ``kernel_ids``; failures are printed (the gateway's teardown reaps the rest)."""
    async def delete_one(kernel_id: str) -> None:
        async with gate:
            try:
                await asyncio.to_thread(delete_kernel, gateway, kernel_id)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on with the others
                print(f"warning: could not delete kernel {kernel_id}: {exc}", file=sys.stderr)

    await asyncio.gather(*(delete_one(kernel_id) for kernel_id in kernel_ids))
