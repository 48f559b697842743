"""Channels WebSocket cost: latency, output throughput and concurrency.

Why: once a kernel runs, everything a notebook does goes through the gateway's
WebSocket <-> ZeroMQ bridge; this is the gateway's hot path. Each number is
shown next to the floor, the same workload driven directly over ZeroMQ with
jupyter_client, so the table reads as "cost added by the gateway".

Every measure is taken twice per gateway, once per channels protocol, each
with its own client that is the same for both gateways (row prefix):
- ``[json]``: the legacy protocol (no subprotocol, JSON text frames) with the
  ``websockets`` client; every message is JSON-parsed, as notebook clients do.
- ``[v1]``: the ``v1.kernel.websocket.jupyter.org`` binary subprotocol with a
  lean client (``_v1_client``) that reads frames itself and parses only the
  small header parts. For a 20 MB cell the JSON client's own decoding is as
  large as a gateway's work and hides it; this row measures the gateways.

What is measured, per column (floor, kgd, reference):
- execute round trip: ``1+1`` sent as execute_request, until iopub reports
  ``status: idle`` for it; ``--count`` sequential executes on one kernel after
  a warm-up, p50 and p99 in ms, and the p50/p99 overhead above the floor.
- stdout throughput: a cell writing 20 MB to stdout in 64 KiB writes; the bytes of the stream
  messages received until idle, divided by the time from send until the
  client saw idle; median of ``--runs`` (10) cells, in MB/s (10^6 bytes). Also the
  median send-to-idle time, its difference to the floor's, and the gateway
  process's CPU time per cell (mean, from /proc/PID/stat).
- concurrency: ``--kernels`` kernels (default 8), one client each, all doing
  ``--per-kernel`` sequential ``1+1`` executes at the same time; total
  executes per second.

The reference runs with ``--ZMQChannelsWebsocketConnection.limit_rate=False``:
by default it forwards at most 1 MB/s of iopub data per connection (over a
3 s window) and drops the rest of the 20 MB, replacing it with an "IOPub data
rate exceeded" notice. The benchmark measures the bridge, not that policy; the
"stdout received" row shows whether all 20 MB arrived (throughput is only
reported when they did).

The clients set TCP_NODELAY. The reference does not disable Nagle on its
side, so its small frames may wait for the client's delayed ACK (about 40 ms
on Linux): that shows in its round trip and is what a real client sees.

Run: ``python3 benchmarks/ws_roundtrip.py [--only kgd|reference|both] [--runs 10] [--output-only]``
(``--output-only``: only the 20 MB rows, kgd, the reference and the floor in one run)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

from _floor import floor_execute, floor_kernel
from _gateways import (UNLIMITED_IOPUB_ARGS, Gateway, add_common_arguments, measure_each, running_gateway,
                       selected_gateways)
from _kernel_client import TIMEOUT_S, ExecuteResult, gateway_kernel
from _v1_client import SUBPROTOCOL as V1_SUBPROTOCOL
from _v1_client import V1Channels
from _report import Metrics, Row, median, percentile, print_table

Executor = Callable[[str], Awaitable[ExecuteResult]]
KernelOpener = Callable[[], AbstractAsyncContextManager[Executor]]
CpuClock = Callable[[], float]

TRIVIAL_CELL = "1+1"
OUTPUT_MB = 20
OUTPUT_BYTES = OUTPUT_MB * 1_000_000
OUTPUT_CHUNK = 64 * 1024
# 20 MB to stdout in 64 KiB writes, as a program printing a large result does.
OUTPUT_CELL = (f"import sys\nchunk = 'x' * {OUTPUT_CHUNK}\n"
               f"for _ in range({OUTPUT_BYTES // OUTPUT_CHUNK}):\n    sys.stdout.write(chunk)\n"
               f"sys.stdout.write('x' * {OUTPUT_BYTES % OUTPUT_CHUNK})\n")
WARMUP_EXECUTES = 20

# Channels WebSocket protocols, each driven by its own client, the same for both gateways.
PROTOCOLS = {
    "json": "legacy JSON text frames, websockets client, every message JSON-parsed",
    "v1": f"{V1_SUBPROTOCOL} binary frames, lean client parsing headers only",
}
_BASE_ROWS = (
    Row("execute round trip p50 (ms)", "rt_p50", "{:.2f}"),
    Row("execute round trip p99 (ms)", "rt_p99", "{:.2f}"),
    Row("p50 overhead above floor (ms)", "overhead_p50", "{:+.2f}"),
    Row("p99 overhead above floor (ms)", "overhead_p99", "{:+.2f}"),
    Row(f"stdout received per {OUTPUT_MB} MB cell (MB)", "output_received_mb"),
    Row(f"stdout throughput, {OUTPUT_MB} MB cell (MB/s)", "output_mbps"),
    Row(f"{OUTPUT_MB} MB cell, send to idle (ms)", "output_ms"),
    Row(f"{OUTPUT_MB} MB cell, time above floor (ms)", "output_overhead_ms", "{:+.1f}"),
    Row(f"{OUTPUT_MB} MB cell, gateway CPU time (ms)", "output_cpu_ms", "{:.0f}"),
    Row("concurrent kernels (executes/s)", "concurrent_eps"),
)
# Grouped by measure, so the two protocols' numbers for one thing are next to each other.
ROWS = tuple(Row(f"[{protocol}] {row.label}", f"{row.key}.{protocol}", row.fmt)
             for row in _BASE_ROWS for protocol in PROTOCOLS)


@dataclass(frozen=True)
class Workload:
    count: int
    runs: int
    kernels: int
    per_kernel: int
    output_only: bool = False


@asynccontextmanager
async def _floor_executor() -> AsyncIterator[Executor]:
    async with floor_kernel() as client:
        await client.wait_for_ready(timeout=TIMEOUT_S)
        yield partial(floor_execute, client)


def _gateway_opener(gateway: Gateway, protocol: str) -> KernelOpener:
    channels_class = None if protocol == "json" else V1Channels

    @asynccontextmanager
    async def opener() -> AsyncIterator[Executor]:
        async with gateway_kernel(gateway, channels_class) as channels:
            yield channels.execute
    return opener


async def _round_trips(execute: Executor, count: int) -> Metrics:
    for _ in range(WARMUP_EXECUTES):
        await execute(TRIVIAL_CELL)
    samples_ms = []
    for _ in range(count):
        began = time.perf_counter()
        await execute(TRIVIAL_CELL)
        samples_ms.append((time.perf_counter() - began) * 1000)
    return {"rt_p50": percentile(samples_ms, 50), "rt_p99": percentile(samples_ms, 99)}


async def _output_throughput(execute: Executor, runs: int, cpu_seconds: CpuClock | None) -> Metrics:
    """Median MB/s and send-to-idle time over ``runs`` output cells, and the gateway's CPU per cell.

    The rate is omitted if any output was dropped. ``cpu_seconds`` reads the
    gateway process's CPU time (None for the floor, which has no gateway).
    """
    rates, received, times_ms, cpu_ms = [], [], [], []
    for _ in range(runs):
        cpu_before = cpu_seconds() if cpu_seconds else 0.0
        began = time.perf_counter()
        result = await execute(OUTPUT_CELL)
        elapsed = result.idle_at - began
        if cpu_seconds:
            cpu_ms.append((cpu_seconds() - cpu_before) * 1000)
        received.append(result.stream_bytes)
        rates.append(result.stream_bytes / 1e6 / elapsed)
        times_ms.append(elapsed * 1000)
    metrics: Metrics = {"output_received_mb": min(received) / 1e6}
    if min(received) == OUTPUT_BYTES:
        metrics["output_mbps"] = median(rates)
        metrics["output_ms"] = median(times_ms)
        if cpu_ms:  # a mean: the kernel counts CPU time in 10 ms ticks
            metrics["output_cpu_ms"] = sum(cpu_ms) / len(cpu_ms)
    else:
        print(f"warning: only {min(received)} of {OUTPUT_BYTES} stream bytes arrived; "
              "throughput not reported", file=sys.stderr)
    return metrics


async def _execute_many(execute: Executor, count: int) -> None:
    for _ in range(count):
        await execute(TRIVIAL_CELL)


async def _concurrency(open_kernel: KernelOpener, kernels: int, per_kernel: int) -> Metrics:
    async with AsyncExitStack() as stack:
        executors = [await stack.enter_async_context(open_kernel()) for _ in range(kernels)]
        await asyncio.gather(*(_execute_many(execute, WARMUP_EXECUTES // 4) for execute in executors))
        began = time.perf_counter()
        await asyncio.gather(*(_execute_many(execute, per_kernel) for execute in executors))
        elapsed = time.perf_counter() - began
    return {"concurrent_eps": kernels * per_kernel / elapsed}


async def _measure(open_kernel: KernelOpener, workload: Workload, cpu_seconds: CpuClock | None = None) -> Metrics:
    async with open_kernel() as execute:
        metrics = {} if workload.output_only else await _round_trips(execute, workload.count)
        metrics |= await _output_throughput(execute, workload.runs, cpu_seconds)
    if not workload.output_only:
        metrics |= await _concurrency(open_kernel, workload.kernels, workload.per_kernel)
    return metrics


def _add_overhead(metrics: Metrics, floor: Metrics) -> None:
    if "rt_p50" in metrics:
        metrics["overhead_p50"] = metrics["rt_p50"] - floor["rt_p50"]
        metrics["overhead_p99"] = metrics["rt_p99"] - floor["rt_p99"]
    if "output_ms" in metrics and "output_ms" in floor:
        metrics["output_overhead_ms"] = metrics["output_ms"] - floor["output_ms"]


def _tagged(metrics: Metrics, protocol: str) -> Metrics:
    return {f"{key}.{protocol}": value for key, value in metrics.items()}


def measure(only: str, workload: Workload, auth_token: str | None) -> dict[str, Metrics | None]:
    """Metrics per column: floor, kgd, reference (None when not run).

    The floor has no WebSocket: its numbers are shown on both protocols' rows.
    """
    floor_metrics = asyncio.run(_measure(_floor_executor, workload))
    floor: Metrics = {}
    for protocol in PROTOCOLS:
        floor |= _tagged(floor_metrics, protocol)

    def measure_gateway(name: str) -> Metrics:
        metrics: Metrics = {}
        with running_gateway(name, auth_token=auth_token, extra_args=UNLIMITED_IOPUB_ARGS[name]) as gateway:
            for protocol in PROTOCOLS:
                measured = asyncio.run(_measure(_gateway_opener(gateway, protocol), workload, gateway.cpu_seconds))
                _add_overhead(measured, floor_metrics)
                metrics |= _tagged(measured, protocol)
        return metrics

    columns: dict[str, Metrics | None] = {"floor": floor, "kgd": None, "reference": None}
    columns |= measure_each(selected_gateways(only), measure_gateway)
    return columns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, runs_default=10,
                         runs_help=f"{OUTPUT_MB} MB output cells per column and protocol (default: 10)")
    parser.add_argument("--count", type=int, default=300, help="sequential round trips (default: 300)")
    parser.add_argument("--kernels", type=int, default=8, help="concurrently driven kernels (default: 8)")
    parser.add_argument("--per-kernel", type=int, default=50,
                        help="executes per kernel in the concurrency test (default: 50)")
    parser.add_argument("--output-only", action="store_true",
                        help=f"only the {OUTPUT_MB} MB output rows: no round trips, no concurrency")
    args = parser.parse_args(argv)
    workload = Workload(count=args.count, runs=args.runs, kernels=args.kernels, per_kernel=args.per_kernel,
                        output_only=args.output_only)
    columns = measure(args.only, workload, args.auth_token)
    title = (f"Channels WebSocket: {workload.runs} output cells" if workload.output_only else
             f"Channels WebSocket: {workload.count} round trips, {workload.runs} output cells, "
             f"{workload.kernels} kernels x {workload.per_kernel} executes")
    measured = {key for metrics in columns.values() if metrics for key in metrics}
    print_table(title, columns, [row for row in ROWS if row.key in measured])
    for protocol, description in PROTOCOLS.items():
        print(f"  [{protocol}] {description}")


if __name__ == "__main__":
    main()
