"""Fairness: a quiet kernel's round trip while another kernel floods output.

Why: one notebook printing megabytes must not stall every other notebook on
the same gateway. If the gateway reads a flooding kernel's socket until it is
empty, or writes one client's frames before looking at anything else, the
other kernels' replies wait behind it.

What is measured, per column (floor, kgd, reference): two kernels, a *flood*
ipykernel and a *quiet* kernel (ipykernel, or the stand-in with ``--quiet
standin``), each on its own channels WebSocket (v1, the lean ``_v1_client``,
which does no per-byte work on stream text). First ``--probes`` sequential
``execute('pass')`` round trips (send until iopub idle) on the quiet kernel
alone; then ``--runs`` times the flood kernel runs the 20 MB cell of
``ws_roundtrip`` (64 KiB writes) while the quiet kernel does round trips back
to back until the flood's idle arrives. Reported: the quiet round trip's p50,
p99 and max alone and during the floods, the ratio of the p99s, how many
round trips fell during the floods, and the flood cell's send-to-idle time.

The floor is the same with no gateway (jupyter_client over ZeroMQ, both
kernels in one asyncio loop): on this 2-core machine the flooding kernel and
the client take CPU from the quiet kernel, so its "during" numbers are what
the machine itself imposes; a gateway's excess over them is its own unfairness.

Run: ``python3 benchmarks/fairness.py [--only kgd|reference|both] [--runs 10] [--quiet ipykernel|standin]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

from _floor import floor_execute, floor_kernel
from _gateways import (IPYKERNEL, STANDIN_KERNEL, UNLIMITED_IOPUB_ARGS, Gateway, add_common_arguments,
                       measure_each, running_gateway, selected_gateways)
from _kernel_client import TIMEOUT_S, ExecuteResult, gateway_kernel
from _report import Metrics, Row, median, percentile, print_table
from _v1_client import V1Channels
from ws_roundtrip import OUTPUT_CELL, OUTPUT_MB

Executor = Callable[[str], Awaitable[ExecuteResult]]
KernelOpener = Callable[[str], AbstractAsyncContextManager[Executor]]

QUIET_KINDS = {"ipykernel": IPYKERNEL, "standin": STANDIN_KERNEL}
CELL = "pass"
WARMUP_EXECUTES = 20

ROWS = (
    Row("quiet round trip p50, alone (ms)", "alone_p50", "{:.2f}"),
    Row("quiet round trip p99, alone (ms)", "alone_p99", "{:.2f}"),
    Row(f"quiet round trip p50, during {OUTPUT_MB} MB output (ms)", "flood_p50", "{:.2f}"),
    Row(f"quiet round trip p99, during {OUTPUT_MB} MB output (ms)", "flood_p99", "{:.2f}"),
    Row(f"quiet round trip max, during {OUTPUT_MB} MB output (ms)", "flood_max", "{:.2f}"),
    Row("quiet p99 during / alone (x)", "p99_ratio", "{:.1f}"),
    Row("quiet round trips during the floods", "flood_samples", "{:.0f}"),
    Row(f"{OUTPUT_MB} MB cell, send to idle (ms, median)", "flood_ms", "{:.0f}"),
)


@asynccontextmanager
async def _floor_opener(kernel_name: str) -> AsyncIterator[Executor]:
    async with floor_kernel(kernel_name) as client:
        await client.wait_for_ready(timeout=TIMEOUT_S)
        yield partial(floor_execute, client)


def _gateway_opener(gateway: Gateway) -> KernelOpener:
    @asynccontextmanager
    async def opener(kernel_name: str) -> AsyncIterator[Executor]:
        async with gateway_kernel(gateway, V1Channels, kernel_name) as channels:
            # Counting the JSON content instead of the text keeps the client idle after each idle.
            yield partial(channels.execute, exact_count=False)
    return opener


async def _timed(execute: Executor, code: str) -> float:
    began = time.perf_counter()
    await execute(code)
    return (time.perf_counter() - began) * 1000


async def _measure(open_kernel: KernelOpener, quiet_kernel: str, probes: int, runs: int) -> Metrics:
    async with open_kernel(IPYKERNEL) as flood, open_kernel(quiet_kernel) as quiet:
        await flood(CELL)
        for _ in range(WARMUP_EXECUTES):
            await quiet(CELL)
        alone = [await _timed(quiet, CELL) for _ in range(probes)]
        during: list[float] = []
        flood_ms = []
        for _ in range(runs):
            flooding = asyncio.create_task(_timed(flood, OUTPUT_CELL))
            while not flooding.done():
                during.append(await _timed(quiet, CELL))
            flood_ms.append(flooding.result())
    metrics: Metrics = {"alone_p50": percentile(alone, 50), "alone_p99": percentile(alone, 99),
                        "flood_samples": len(during), "flood_ms": median(flood_ms)}
    if during:
        metrics |= {"flood_p50": percentile(during, 50), "flood_p99": percentile(during, 99),
                    "flood_max": max(during), "p99_ratio": percentile(during, 99) / metrics["alone_p99"]}
    return metrics


def measure(only: str, quiet_kernel: str, probes: int, runs: int,
            auth_token: str | None) -> dict[str, Metrics | None]:
    """Metrics per column: floor, kgd, reference (None when not run)."""
    def measure_gateway(name: str) -> Metrics:
        with running_gateway(name, auth_token=auth_token, extra_args=UNLIMITED_IOPUB_ARGS[name]) as gateway:
            return asyncio.run(_measure(_gateway_opener(gateway), quiet_kernel, probes, runs))

    columns: dict[str, Metrics | None] = {"floor": None, "kgd": None, "reference": None}
    columns |= measure_each(["floor"], lambda _: asyncio.run(_measure(_floor_opener, quiet_kernel, probes, runs)))
    columns |= measure_each(selected_gateways(only), measure_gateway)
    return columns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, runs_default=10, runs_help=f"{OUTPUT_MB} MB floods per column (default: 10)")
    parser.add_argument("--probes", type=int, default=200,
                        help="quiet round trips timed with no flood (default: 200)")
    parser.add_argument("--quiet", choices=tuple(QUIET_KINDS), default="ipykernel",
                        help="the quiet kernel's kind (default: ipykernel)")
    args = parser.parse_args(argv)
    columns = measure(args.only, QUIET_KINDS[args.quiet], args.probes, args.runs, args.auth_token)
    print_table(f"Fairness: a quiet {args.quiet} kernel's execute('pass') round trip while an ipykernel "
                f"prints {OUTPUT_MB} MB ({args.runs} floods)", columns, ROWS)


if __name__ == "__main__":
    main()
