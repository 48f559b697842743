"""Kernel start time and daemon memory, kgd vs the reference gateway.

Why: starting a kernel is the first thing every client waits for, and the
gateway's own memory is what a host pays per gateway on top of its kernels.

What is measured:
- kernel start: from ``POST /api/kernels`` until the kernel answers a
  ``kernel_info_request`` sent over ``/api/kernels/{id}/channels`` — the moment
  a client can really use it. Median, min and max of ``--runs`` starts; each
  kernel is deleted (untimed) before the next. The floor column is the same
  with no gateway: jupyter_client starts a kernel and waits for kernel_info.
- daemon RSS: VmRSS of the gateway process (kernels excluded), once idle
  before any kernel was started, and once with 4 kernels running, each with
  an open channels WebSocket.

Run: ``python3 benchmarks/kernel_start.py [--only kgd|reference|both] [--runs 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import AsyncExitStack

from _floor import floor_kernel
from _gateways import Gateway, add_common_arguments, measure_each, running_gateway, selected_gateways
from _kernel_client import gateway_kernel
from _report import Metrics, Row, median, print_table

RSS_KERNELS = 4
SETTLE_S = 1.0

ROWS = (
    Row("kernel start, median (ms)", "start_median"),
    Row("kernel start, min (ms)", "start_min"),
    Row("kernel start, max (ms)", "start_max"),
    Row("daemon RSS, idle (MiB)", "rss_idle"),
    Row(f"daemon RSS, {RSS_KERNELS} kernels (MiB)", "rss_kernels"),
)


async def _timed_start(gateway: Gateway) -> float:
    """Seconds from POST /api/kernels to kernel_info_reply; the kernel is deleted afterwards."""
    began = time.perf_counter()
    async with gateway_kernel(gateway):
        return time.perf_counter() - began


async def _rss_with_kernels(gateway: Gateway, count: int) -> float:
    """Gateway RSS (MiB) while ``count`` kernels run with an open channels WebSocket each."""
    async with AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(gateway_kernel(gateway))
        await asyncio.sleep(SETTLE_S)
        return gateway.rss_mib()


def _start_stats(samples_s: list[float]) -> Metrics:
    samples_ms = [s * 1000 for s in samples_s]
    return {"start_median": median(samples_ms), "start_min": min(samples_ms), "start_max": max(samples_ms)}


async def _measure_gateway(gateway: Gateway, runs: int) -> Metrics:
    await asyncio.sleep(SETTLE_S)
    metrics: Metrics = {"rss_idle": gateway.rss_mib()}
    metrics |= _start_stats([await _timed_start(gateway) for _ in range(runs)])
    metrics["rss_kernels"] = await _rss_with_kernels(gateway, RSS_KERNELS)
    return metrics


async def _timed_floor_start() -> float:
    began = time.perf_counter()
    async with floor_kernel():
        return time.perf_counter() - began


async def _measure_floor(runs: int) -> Metrics:
    return _start_stats([await _timed_floor_start() for _ in range(runs)])


def measure(only: str, runs: int, auth_token: str | None) -> dict[str, Metrics | None]:
    """Metrics per column: floor, kgd, reference (None when not run)."""
    def measure_gateway(name: str) -> Metrics:
        with running_gateway(name, auth_token=auth_token) as gateway:
            return asyncio.run(_measure_gateway(gateway, runs))

    columns: dict[str, Metrics | None] = {"floor": asyncio.run(_measure_floor(runs)),
                                          "kgd": None, "reference": None}
    columns |= measure_each(selected_gateways(only), measure_gateway)
    return columns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, runs_default=7, runs_help="kernel starts per gateway (default: 7)")
    args = parser.parse_args(argv)
    columns = measure(args.only, args.runs, args.auth_token)
    print_table(f"Kernel start ({args.runs} runs) and daemon memory", columns, ROWS)


if __name__ == "__main__":
    main()
