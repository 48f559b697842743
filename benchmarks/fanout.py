"""Fan-out: many kernels driven at once from one asyncio client, kgd beside the reference.

Why: a gateway serves many notebooks at once; what matters is the total rate
it relays, the latency each client sees under that load, and whether every
kernel gets its share. The client is one asyncio event loop (a threaded
Python client adds its own GIL contention to p99 and to fairness).

What is measured, per gateway, kernel kind and kernel count (``--kernels``,
default 8 and 32): that many kernels are started, each gets one channels
WebSocket (legacy JSON protocol, the ``websockets`` library, as in
``ws_roundtrip``'s ``[json]`` rows), a few warm-up executes, then every
kernel runs ``execute('pass')`` back to back for ``--duration`` seconds
(``--runs`` times). An execute is timed from sending the request until iopub
``status: idle`` for it.

- executes/s: all executes over the wall time of the runs;
- p50/p99 (ms): over all executes of all kernels;
- per-kernel min/max vs mean (%): each kernel's execute count against the mean
  count (0 is perfectly even);
- gateway CPU (cores): the gateway process's user + system CPU time
  (/proc/PID/stat, kernels excluded) over the wall time;
- executes per gateway CPU-second: what the relay sustains per core. With the
  ``standin`` kernel (``standin_kernel.py``, which answers in microseconds) the
  kernels leave the CPU to the gateway, so this is the gateway's own ceiling;
  with ``ipykernel`` the kernels take most of this 2-core machine.

Run: ``python3 benchmarks/fanout.py [--only kgd|reference|both] [--kernels 8,32]
[--kinds ipykernel,standin] [--duration 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from _gateways import (IPYKERNEL, STANDIN_KERNEL, UNLIMITED_IOPUB_ARGS, Gateway, add_common_arguments,
                       int_list, measure_each, running_gateway, selected_gateways)
from _kernel_client import Channels, started_kernels
from _report import Metrics, Row, percentile, print_table

KINDS = {"ipykernel": IPYKERNEL, "standin": STANDIN_KERNEL}
CELL = "pass"
WARMUP_EXECUTES = 5


@dataclass(frozen=True)
class FanOut:
    kernel_counts: tuple[int, ...]
    kinds: tuple[str, ...]
    duration: float
    runs: int

    def configurations(self) -> list[tuple[str, int]]:
        return [(kind, count) for kind in self.kinds for count in self.kernel_counts]


def rows(fan_out: FanOut) -> list[Row]:
    table = []
    for kind, count in fan_out.configurations():
        tag = f"{kind} x{count}"
        table += [
            Row(f"[{tag}] executes/s", f"eps.{tag}"),
            Row(f"[{tag}] round trip p50 (ms)", f"p50.{tag}", "{:.2f}"),
            Row(f"[{tag}] round trip p99 (ms)", f"p99.{tag}", "{:.2f}"),
            Row(f"[{tag}] per-kernel min vs mean (%)", f"min_dev.{tag}", "{:+.0f}"),
            Row(f"[{tag}] per-kernel max vs mean (%)", f"max_dev.{tag}", "{:+.0f}"),
            Row(f"[{tag}] gateway CPU (cores)", f"cores.{tag}", "{:.2f}"),
            Row(f"[{tag}] executes per gateway CPU-second", f"eps_per_core.{tag}", "{:.0f}"),
        ]
    return table


async def _warm_up(channels: Channels) -> None:
    for _ in range(WARMUP_EXECUTES):
        await channels.execute(CELL)


async def _drive(channels: Channels, deadline: float, samples_ms: list[float]) -> int:
    """``execute('pass')`` back to back until ``deadline``; return how many were done."""
    done = 0
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        await channels.execute(CELL)
        samples_ms.append((time.perf_counter() - began) * 1000)
        done += 1
    return done


async def _fan_out(gateway: Gateway, kernel_name: str, count: int, duration: float, runs: int) -> Metrics:
    async with started_kernels(gateway, count, kernel_name) as kernels, AsyncExitStack() as stack:
        if kernels.failures:
            raise RuntimeError(f"{len(kernels.failures)} of {count} kernels did not start: {kernels.failures[0]}")
        clients = []
        for kernel_id in kernels.ids:
            channels = await Channels.open(gateway, kernel_id)
            stack.push_async_callback(channels.close)
            await channels.kernel_info()
            clients.append(channels)
        await asyncio.gather(*(_warm_up(channels) for channels in clients))
        samples_ms: list[float] = []
        per_kernel = [0] * count
        elapsed = cpu = 0.0
        for _ in range(runs):
            cpu_before, began = gateway.cpu_seconds(), time.perf_counter()
            deadline = began + duration
            done = await asyncio.gather(*(_drive(channels, deadline, samples_ms) for channels in clients))
            elapsed += time.perf_counter() - began
            cpu += gateway.cpu_seconds() - cpu_before
            per_kernel = [total + new for total, new in zip(per_kernel, done)]
    return _summary(samples_ms, per_kernel, elapsed, cpu)


def _summary(samples_ms: Sequence[float], per_kernel: Sequence[int], elapsed: float, cpu: float) -> Metrics:
    total = sum(per_kernel)
    mean = total / len(per_kernel)
    metrics: Metrics = {
        "eps": total / elapsed,
        "p50": percentile(samples_ms, 50),
        "p99": percentile(samples_ms, 99),
        "min_dev": (min(per_kernel) / mean - 1) * 100,
        "max_dev": (max(per_kernel) / mean - 1) * 100,
        "cores": cpu / elapsed,
    }
    if cpu > 0:
        metrics["eps_per_core"] = total / cpu
    return metrics


def measure(only: str, fan_out: FanOut, auth_token: str | None) -> dict[str, Metrics | None]:
    """Metrics per gateway column (None when not run), keys tagged by kernel kind and count."""
    def measure_gateway(name: str) -> Metrics:
        metrics: Metrics = {}
        with running_gateway(name, auth_token=auth_token, extra_args=UNLIMITED_IOPUB_ARGS[name]) as gateway:
            for kind, count in fan_out.configurations():
                print(f"[{name}] {count} {kind} kernels, {fan_out.runs} x {fan_out.duration:g} s", flush=True)
                measured = asyncio.run(_fan_out(gateway, KINDS[kind], count, fan_out.duration, fan_out.runs))
                metrics |= {f"{key}.{kind} x{count}": value for key, value in measured.items()}
        return metrics

    columns: dict[str, Metrics | None] = {"kgd": None, "reference": None}
    columns |= measure_each(selected_gateways(only), measure_gateway)
    return columns


def _kind_list(text: str) -> tuple[str, ...]:
    kinds = tuple(text.split(","))
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kernel kind(s) {sorted(unknown)}; choose from {sorted(KINDS)}")
    return kinds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, runs_default=1, runs_help="timed runs per configuration (default: 1)")
    parser.add_argument("--kernels", type=int_list, default=(8, 32),
                        help="kernel counts, comma-separated (default: 8,32)")
    parser.add_argument("--kinds", type=_kind_list, default=tuple(KINDS),
                        help="kernel kinds, comma-separated: ipykernel, standin (default: both)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run (default: 10)")
    args = parser.parse_args(argv)
    fan_out = FanOut(kernel_counts=args.kernels, kinds=args.kinds, duration=args.duration, runs=args.runs)
    columns = measure(args.only, fan_out, args.auth_token)
    print_table(f"Fan-out: execute('pass') loops, one WebSocket per kernel, {fan_out.runs} x "
                f"{fan_out.duration:g} s per configuration", columns, rows(fan_out))


if __name__ == "__main__":
    main()
