"""Many kernels on one daemon: the gateway's own cost per kernel.

Why: a real ipykernel costs ~50 MB, so hundreds of kernels on one host are
the kernels' problem, not the gateway's; but whatever the gateway itself holds
per kernel (memory, open files, ZeroMQ sockets) bounds how many one daemon can
serve. The kernels here are ``standin_kernel.py`` stand-ins.

What is measured, per gateway and per ``--kernels`` K (default 200; each K on
a fresh daemon, started with its soft RLIMIT_NOFILE at the hard limit):

- K stand-in kernels are started through ``POST /api/kernels``, ``--parallel``
  at a time: how many started, and how long it took for all of them;
- with the kernels running and no WebSocket: the daemon's RSS, open files,
  TCP connections to kernels (one per connected ZeroMQ socket) and eventfds
  (one per ZeroMQ socket, plus a few per context), also per kernel above the
  idle daemon;
- the same once every kernel has one open channels WebSocket (v1, the
  ``_v1_client``) that got its ``kernel_info`` reply, per kernel above the state
  without WebSockets;
- how long deleting them all took, and the daemon's RSS afterwards.

Failures (kernels that did not start, WebSockets that did not work) are
counted by kind and printed under the table.

Run: ``python3 benchmarks/many_kernels.py [--only kgd|reference|both] [--kernels 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections import Counter
from collections.abc import Sequence

from _gateways import (STANDIN_KERNEL, UNLIMITED_IOPUB_ARGS, Gateway, add_common_arguments, int_list,
                       measure_each, running_gateway, selected_gateways, set_open_files_limit)
from _kernel_client import started_kernels
from _report import Metrics, Row, print_failures, print_table, round_tag, round_tags
from connections import Limits, close_crowd, open_crowd

SETTLE_S = 2.0
FILE_KINDS = {"fds": "open files", "kernel_tcp": "TCP to kernels", "eventfd": "eventfds"}


def rows(counts: Sequence[int], runs: int) -> list[Row]:
    table = []
    for tag in round_tags(counts, runs):
        table += [
            Row(f"[{tag}] kernels started", f"started.{tag}", "{:.0f}"),
            Row(f"[{tag}] time to start them all (s)", f"start_s.{tag}", "{:.1f}"),
            Row(f"[{tag}] daemon RSS, idle (MiB)", f"rss_idle.{tag}"),
            Row(f"[{tag}] daemon RSS, kernels (MiB)", f"rss_kernels.{tag}"),
            Row(f"[{tag}] daemon RSS per kernel (KiB)", f"rss_per_kernel.{tag}"),
        ]
        table += [Row(f"[{tag}] {label} per kernel", f"{kind}_per_kernel.{tag}", "{:.2f}")
                  for kind, label in FILE_KINDS.items()]
        table += [
            Row(f"[{tag}] daemon open files, kernels", f"fds_kernels.{tag}", "{:.0f}"),
            Row(f"[{tag}] WebSockets that worked (one per kernel)", f"ws_worked.{tag}", "{:.0f}"),
            Row(f"[{tag}] daemon RSS, kernels + WebSockets (MiB)", f"rss_ws.{tag}"),
            Row(f"[{tag}] daemon RSS per WebSocket (KiB)", f"rss_per_ws.{tag}"),
        ]
        table += [Row(f"[{tag}] {label} per WebSocket", f"{kind}_per_ws.{tag}", "{:.2f}")
                  for kind, label in FILE_KINDS.items()]
        table += [
            Row(f"[{tag}] time to delete them all (s)", f"delete_s.{tag}", "{:.1f}"),
            Row(f"[{tag}] daemon RSS after deleting (MiB)", f"rss_deleted.{tag}"),
        ]
    return table


def _per_item(after: Counter[str], before: Counter[str], items: int, suffix: str) -> Metrics:
    return {f"{kind}_{suffix}": (after[kind] - before[kind]) / items for kind in FILE_KINDS}


async def _round(gateway: Gateway, count: int, limits: Limits) -> tuple[Metrics, Counter[str]]:
    failures: Counter[str] = Counter()
    await asyncio.sleep(SETTLE_S)
    metrics: Metrics = {"rss_idle": gateway.rss_mib()}
    files_idle = gateway.open_files()
    began = time.perf_counter()
    async with started_kernels(gateway, count, STANDIN_KERNEL, limits.parallel) as kernels:
        metrics |= {"started": len(kernels.ids), "start_s": time.perf_counter() - began}
        failures.update(f"kernel start: {failure[:100]}" for failure in kernels.failures)
        if not kernels.ids:
            return metrics, failures
        await asyncio.sleep(SETTLE_S)
        metrics["rss_kernels"] = gateway.rss_mib()
        files_kernels = gateway.open_files()
        metrics["fds_kernels"] = files_kernels["fds"]
        metrics["rss_per_kernel"] = (metrics["rss_kernels"] - metrics["rss_idle"]) * 1024 / len(kernels.ids)
        metrics |= _per_item(files_kernels, files_idle, len(kernels.ids), "per_kernel")
        crowd = await open_crowd(gateway, kernels.ids, len(kernels.ids), limits)
        try:
            failures.update({f"WebSocket: {kind}": n for kind, n in crowd.failures.items()})
            await asyncio.sleep(SETTLE_S)
            metrics |= {"ws_worked": len(crowd.worked), "rss_ws": gateway.rss_mib()}
            if crowd.opened:
                metrics["rss_per_ws"] = (metrics["rss_ws"] - metrics["rss_kernels"]) * 1024 / len(crowd.opened)
                metrics |= _per_item(gateway.open_files(), files_kernels, len(crowd.opened), "per_ws")
        finally:
            await close_crowd(crowd)
        deleting = time.perf_counter()
    metrics["delete_s"] = time.perf_counter() - deleting
    await asyncio.sleep(SETTLE_S)
    metrics["rss_deleted"] = gateway.rss_mib()
    return metrics, failures


def measure(only: str, counts: Sequence[int], runs: int, limits: Limits,
            auth_token: str | None) -> tuple[dict[str, Metrics | None], dict[str, Counter[str]]]:
    """Metrics per gateway column (None when not run) and the failures each gateway had, by kind."""
    failures: dict[str, Counter[str]] = {}
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def measure_gateway(name: str) -> Metrics:
        metrics: Metrics = {}
        failures[name] = Counter()
        for count in counts:
            with running_gateway(name, auth_token=auth_token, extra_args=UNLIMITED_IOPUB_ARGS[name],
                                 open_files=open_files) as gateway:
                for run in range(1, runs + 1):
                    tag = round_tag(count, run, runs)
                    print(f"[{name}] {tag}: {count} stand-in kernels", flush=True)
                    measured, failed = asyncio.run(_round(gateway, count, limits))
                    metrics |= {f"{key}.{tag}": value for key, value in measured.items()}
                    failures[name].update({f"[{tag}] {kind}": n for kind, n in failed.items()})
        return metrics

    columns: dict[str, Metrics | None] = {"kgd": None, "reference": None}
    columns |= measure_each(selected_gateways(only), measure_gateway)
    return columns, failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, runs_default=1, runs_help="rounds per K on the same daemon (default: 1)")
    parser.add_argument("--kernels", type=int_list, default=(200,),
                        help="numbers of kernels, comma-separated (default: 200)")
    parser.add_argument("--parallel", type=int, default=4, help="kernel starts in flight at once (default: 4)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds for each WebSocket handshake and reply (default: 30)")
    args = parser.parse_args(argv)
    set_open_files_limit()
    limits = Limits(parallel=args.parallel, timeout=args.timeout, max_seconds=max(args.kernels) * args.timeout,
                    probes=0)
    columns, failures = measure(args.only, args.kernels, args.runs, limits, args.auth_token)
    print_table("Many stand-in kernels on one daemon", columns, rows(args.kernels, args.runs))
    print_failures(failures)


if __name__ == "__main__":
    main()
