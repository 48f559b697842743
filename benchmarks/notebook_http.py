"""notebook-http throughput and latency, kgd vs the reference gateway.

Why: in notebook-http mode each HTTP request runs a notebook cell on a kernel
from a small pool, so the gateway's request path, pool hand-off and output
collection decide how many requests a pool can serve.

What is measured: a seed notebook (written to a temp dir) with one cell,
``# GET /hello`` printing ``hello``; the gateway runs it with a pool of
``--pool`` kernels (prespawn, default 2). ``--clients`` concurrent clients
(default 16), each on its own keep-alive HTTP/1.1 connection with TCP_NODELAY,
send ``GET /hello`` until ``--requests`` requests are done (after a warm-up),
``--runs`` times. Reported: requests/s (median over runs), p50/p99 latency
over all requests, and failed requests (non-200 or wrong body). Every run is
also bounded by ``--max-seconds``.

Run: ``python3 benchmarks/notebook_http.py [--only kgd|reference|both] [--runs 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _gateways import (Gateway, NotebookHttp, add_common_arguments, measure_each, running_gateway,
                       selected_gateways)
from _kernel_client import TIMEOUT_S, set_nodelay
from _report import Metrics, Row, median, percentile, print_table

ENDPOINT = "/hello"
EXPECTED_BODY = b"hello\n"
WARMUP_REQUESTS = 50

ROWS = (
    Row("requests/s (median of runs)", "rps"),
    Row("latency p50 (ms)", "p50", "{:.2f}"),
    Row("latency p99 (ms)", "p99", "{:.2f}"),
    Row("failed requests", "failed", "{:.0f}"),
)


@dataclass(frozen=True)
class Load:
    clients: int
    requests: int
    runs: int
    max_seconds: float


@dataclass
class RunResult:
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0


def write_notebook(directory: Path) -> Path:
    """The seed notebook: one endpoint cell, ``GET /hello`` printing ``hello``."""
    cell = {"cell_type": "code", "execution_count": None, "id": "hello", "metadata": {}, "outputs": [],
            "source": [f"# GET {ENDPOINT}\n", "print('hello')"]}
    notebook = {"cells": [cell], "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                             "language_info": {"name": "python"}}}
    path = directory / "hello.ipynb"
    path.write_text(json.dumps(notebook))
    return path


# --- a minimal keep-alive HTTP/1.1 client ------------------------------------------------------

class HttpConnection:
    """One keep-alive connection that sends GETs one at a time, reconnecting if the server closes."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        headers = {"Host": f"127.0.0.1:{gateway.port}", **gateway.headers()}
        lines = [f"GET {ENDPOINT} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def get(self) -> tuple[int, bytes]:
        reader, writer = await self._connected()
        writer.write(self._request)
        status, headers = await _read_head(reader)
        body = await _read_body(reader, headers)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self._streams:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            await writer.wait_closed()

    async def _connected(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self._gateway.port)
            set_nodelay(writer.get_extra_info("socket"))
            self._streams = (reader, writer)
        return self._streams


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before the response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return await reader.readexactly(int(headers.get("content-length", "0")))
    chunks = []
    while size := int((await reader.readline()).split(b";")[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after the chunk
    while await reader.readline() not in (b"\r\n", b""):  # trailers
        pass
    return b"".join(chunks)


# --- load ----------------------------------------------------------------------------------

async def _client(gateway: Gateway, tickets: asyncio.Queue[None], result: RunResult) -> None:
    """Take request tickets until none is left; record latency or failure for each."""
    connection = HttpConnection(gateway)
    try:
        while not tickets.empty():
            tickets.get_nowait()
            began = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(connection.get(), TIMEOUT_S)
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                result.failed += 1
                await connection.close()
                continue
            if status == 200 and body == EXPECTED_BODY:
                result.latencies_ms.append((time.perf_counter() - began) * 1000)
            else:
                result.failed += 1
    finally:
        await connection.close()


async def _run(gateway: Gateway, clients: int, requests: int, max_seconds: float) -> tuple[RunResult, float]:
    """``requests`` GETs over ``clients`` connections; returns the result and elapsed seconds."""
    tickets: asyncio.Queue[None] = asyncio.Queue()
    for _ in range(requests):
        tickets.put_nowait(None)
    result = RunResult()
    began = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(_client(gateway, tickets, result) for _ in range(clients))),
                               max_seconds)
    except asyncio.TimeoutError:
        print(f"warning: run stopped after {max_seconds:.0f}s with {tickets.qsize()} requests not sent",
              file=sys.stderr)
    return result, time.perf_counter() - began


async def _measure_gateway(gateway: Gateway, load: Load) -> Metrics:
    await _run(gateway, load.clients, WARMUP_REQUESTS, load.max_seconds)
    rates, latencies, failed = [], [], 0
    for _ in range(load.runs):
        result, elapsed = await _run(gateway, load.clients, load.requests, load.max_seconds)
        rates.append(len(result.latencies_ms) / elapsed)
        latencies += result.latencies_ms
        failed += result.failed
    metrics: Metrics = {"rps": median(rates), "failed": failed}
    if latencies:
        metrics |= {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}
    return metrics


def measure(only: str, load: Load, pool: int, auth_token: str | None) -> dict[str, Metrics | None]:
    """Metrics per column: kgd, reference (None when not run)."""
    with tempfile.TemporaryDirectory(prefix="kgd-bench-nb-") as directory:
        notebook = NotebookHttp(seed_notebook=write_notebook(Path(directory)), prespawn_count=pool)

        def measure_gateway(name: str) -> Metrics:
            with running_gateway(name, auth_token=auth_token, notebook=notebook, ready_path=ENDPOINT) as gateway:
                return asyncio.run(_measure_gateway(gateway, load))

        columns: dict[str, Metrics | None] = {"kgd": None, "reference": None}
        columns |= measure_each(selected_gateways(only), measure_gateway)
    return columns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, runs_default=3, runs_help="measured runs per gateway (default: 3)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per run (default: 2000)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    parser.add_argument("--pool", type=int, default=2, help="kernel pool size, prespawn_count (default: 2)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="upper bound on the duration of one run (default: 120)")
    args = parser.parse_args(argv)
    load = Load(clients=args.clients, requests=args.requests, runs=args.runs, max_seconds=args.max_seconds)
    columns = measure(args.only, load, args.pool, args.auth_token)
    title = (f"notebook-http GET {ENDPOINT}: {load.clients} clients, pool of {args.pool}, "
             f"{load.runs} runs x {load.requests} requests")
    print_table(title, columns, ROWS)


if __name__ == "__main__":
    main()
