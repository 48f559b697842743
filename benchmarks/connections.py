"""Connections: thousands of concurrent channels WebSockets on one daemon.

Why: one gateway may serve many users, each with notebooks open on a handful
of kernels. How many WebSockets it holds, what each costs, and whether the
connections already open slow down a new client are properties of the daemon
alone: the kernels here are ``standin_kernel.py`` stand-ins.

What is measured, per gateway and per ``--connections`` N (default 1000 and
5000; each N on a fresh daemon):

1. The daemon starts with its soft RLIMIT_NOFILE at ``--daemon-open-files``
   (default: the hard limit); this client raises its own to the hard limit.
   ``--kernels`` (10) stand-in kernels are started for the N connections, and one for the probe.
2. The probe, one more connection on its own kernel, times ``--probes``
   sequential ``execute('pass')`` round trips (send until iopub idle) on the
   idle daemon.
3. N connections are opened by this one asyncio client, at most
   ``--parallel`` handshakes in flight, spread round-robin over those kernels.
   Each one, as soon as it is open, sends one request (``kernel_info`` or
   ``execute('pass')``, alternately) and waits for its reply on shell; from then
   on it is read and discarded (every connection receives all iopub messages
   of its kernel, so the others' requests reach it too: about 3 N^2 / (2 x
   kernels) frames in all, 3.75 million for 5000 over 10). Each handshake and
   each reply has a timeout (``--timeout``), and the whole phase is bounded by
   ``--max-seconds``: a gateway that breaks makes failures, never a hang.
4. With all of them open: daemon RSS and open files, and the probe's round
   trips again. Then every connection is closed and the daemon's RSS read once more.

All connections, the probe's included, speak the v1 binary subprotocol with
the lean ``_v1_client`` (both gateways select it).

Failures are counted by kind and printed under the table: a handshake refused
(with the HTTP status), not answered or reset; a connection that opened
(101) but whose request got no reply or that was closed before it; a
connection that worked but was closed by the server before the end.

Run: ``python3 benchmarks/connections.py [--only kgd|reference|both] [--connections 1000,5000]``
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from _gateways import (STANDIN_KERNEL, UNLIMITED_IOPUB_ARGS, Gateway, add_common_arguments, int_list,
                       measure_each, running_gateway, selected_gateways, set_open_files_limit)
from _kernel_client import execute_content, started_kernels
from _report import (Metrics, Row, describe_failure, percentile, print_failures, print_table, round_tag,
                     round_tags)
from _v1_client import V1Channels

CELL = "pass"
WARMUP_PROBES = 20
SETTLE_S = 2.0
CLOSE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Limits:
    """How hard the client pushes and how long it waits: handshakes in flight, each step's timeout, the bound."""

    parallel: int
    timeout: float
    max_seconds: float
    probes: int


@dataclass
class Crowd:
    """What opening the connections gave: their channels, when they opened and replied, what failed."""

    began: float
    opened: list[V1Channels] = field(default_factory=list)
    opened_at: list[float] = field(default_factory=list)
    replied_at: list[float] = field(default_factory=list)
    readers: dict[V1Channels, asyncio.Task[str]] = field(default_factory=dict)
    worked: set[V1Channels] = field(default_factory=set)
    failures: Counter[str] = field(default_factory=Counter)


def rows(counts: Sequence[int], runs: int) -> list[Row]:
    table = []
    for tag in round_tags(counts, runs):
        table += [
            Row(f"[{tag}] opened (101)", f"opened.{tag}", "{:.0f}"),
            Row(f"[{tag}] worked (got their reply)", f"worked.{tag}", "{:.0f}"),
            Row(f"[{tag}] failed", f"failed.{tag}", "{:.0f}"),
            Row(f"[{tag}] closed by the server after working", f"dropped.{tag}", "{:.0f}"),
            Row(f"[{tag}] time to open them all (s)", f"open_s.{tag}", "{:.2f}"),
            Row(f"[{tag}] time until all replied (s)", f"replied_s.{tag}", "{:.2f}"),
            Row(f"[{tag}] daemon RSS before (MiB)", f"rss_before.{tag}"),
            Row(f"[{tag}] daemon RSS, connections open (MiB)", f"rss_open.{tag}"),
            Row(f"[{tag}] daemon RSS, after closing (MiB)", f"rss_closed.{tag}"),
            Row(f"[{tag}] daemon RSS per open connection (KiB)", f"rss_per_conn.{tag}"),
            Row(f"[{tag}] daemon open files, connections open", f"fds_open.{tag}", "{:.0f}"),
            Row(f"[{tag}] daemon open files per connection", f"fds_per_conn.{tag}", "{:.2f}"),
            Row(f"[{tag}] daemon TCP to kernels per connection", f"kernel_tcp_per_conn.{tag}", "{:.2f}"),
            Row(f"[{tag}] probe round trip p50, idle daemon (ms)", f"probe_idle_p50.{tag}", "{:.2f}"),
            Row(f"[{tag}] probe round trip p99, idle daemon (ms)", f"probe_idle_p99.{tag}", "{:.2f}"),
            Row(f"[{tag}] probe round trip p50, connections open (ms)", f"probe_open_p50.{tag}", "{:.2f}"),
            Row(f"[{tag}] probe round trip p99, connections open (ms)", f"probe_open_p99.{tag}", "{:.2f}"),
        ]
    return table


async def _request(channels: V1Channels, index: int) -> None:
    """The one request a connection makes: kernel_info or execute, alternately."""
    if index % 2:
        await channels.request("execute_request", execute_content(CELL))
    else:
        await channels.kernel_info()


async def _discard(channels: V1Channels) -> str:
    try:
        return await channels.discard_until_closed()
    except Exception as exc:  # noqa: BLE001 - a stream left mid-frame by a timed-out request
        return describe_failure(exc)


async def _connect(gateway: Gateway, kernel_id: str, index: int, gate: asyncio.Semaphore,
                   limits: Limits, crowd: Crowd) -> None:
    """Open one connection and make its request; record the outcome in ``crowd``."""
    async with gate:
        try:
            channels = await asyncio.wait_for(V1Channels.open(gateway, kernel_id), limits.timeout)
        except Exception as exc:  # noqa: BLE001 - counted by kind
            crowd.failures[f"handshake: {describe_failure(exc)}"] += 1
            return
    crowd.opened.append(channels)
    crowd.opened_at.append(time.perf_counter() - crowd.began)
    try:
        await asyncio.wait_for(_request(channels, index), limits.timeout)
    except Exception as exc:  # noqa: BLE001 - counted by kind
        crowd.failures[f"opened (101), then no reply: {describe_failure(exc)}"] += 1
    else:
        crowd.replied_at.append(time.perf_counter() - crowd.began)
        crowd.worked.add(channels)
    finally:
        crowd.readers[channels] = asyncio.create_task(_discard(channels))


async def open_crowd(gateway: Gateway, kernel_ids: Sequence[str], count: int, limits: Limits) -> Crowd:
    """Open ``count`` connections over ``kernel_ids``; whatever is not done by ``max_seconds`` fails."""
    crowd = Crowd(began=time.perf_counter())
    gate = asyncio.Semaphore(limits.parallel)
    tasks = [asyncio.create_task(_connect(gateway, kernel_ids[index % len(kernel_ids)], index, gate, limits, crowd))
             for index in range(count)]
    _, pending = await asyncio.wait(tasks, timeout=limits.max_seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        crowd.failures[f"not done within --max-seconds {limits.max_seconds:g}"] += len(pending)
    return crowd


async def close_crowd(crowd: Crowd) -> None:
    """Close every opened connection, the bounded polite way first, then abort the rest."""
    for reader in crowd.readers.values():
        reader.cancel()
    await asyncio.gather(*crowd.readers.values(), return_exceptions=True)
    closing = [asyncio.create_task(channels.close()) for channels in crowd.opened]
    if closing:
        await asyncio.wait(closing, timeout=CLOSE_TIMEOUT_S)
    for task in closing:
        task.cancel()
    await asyncio.gather(*closing, return_exceptions=True)
    for channels in crowd.opened:
        channels.abort()


async def _probe(channels: V1Channels, count: int, timeout: float) -> Metrics:
    samples_ms = []
    for _ in range(count):
        began = time.perf_counter()
        await asyncio.wait_for(channels.execute(CELL), timeout)
        samples_ms.append((time.perf_counter() - began) * 1000)
    return {"p50": percentile(samples_ms, 50), "p99": percentile(samples_ms, 99)}


async def _probe_or_note(channels: V1Channels, limits: Limits, prefix: str, failures: Counter[str]) -> Metrics:
    try:
        measured = await _probe(channels, limits.probes, limits.timeout)
    except Exception as exc:  # noqa: BLE001 - the probe failing is a result too
        failures[f"probe ({prefix}): {describe_failure(exc)}"] += 1
        return {}
    return {f"{prefix}_{key}": value for key, value in measured.items()}


async def _round(gateway: Gateway, count: int, kernels_count: int, limits: Limits) -> tuple[Metrics, Counter[str]]:
    """One round: kernels, idle probe, N connections, measurements, cleanup."""
    async with started_kernels(gateway, kernels_count + 1, STANDIN_KERNEL) as kernels:
        if kernels.failures:
            raise RuntimeError(f"{len(kernels.failures)} stand-in kernels did not start: {kernels.failures[0]}")
        probe_kernel, *crowd_kernels = kernels.ids
        probe = await asyncio.wait_for(V1Channels.open(gateway, probe_kernel), limits.timeout)
        try:
            await asyncio.wait_for(probe.kernel_info(), limits.timeout)
            await _probe(probe, WARMUP_PROBES, limits.timeout)
            return await _measure_crowd(gateway, probe, crowd_kernels, count, limits)
        finally:
            probe.abort()


async def _measure_crowd(gateway: Gateway, probe: V1Channels, kernel_ids: Sequence[str], count: int,
                         limits: Limits) -> tuple[Metrics, Counter[str]]:
    failures: Counter[str] = Counter()
    await asyncio.sleep(SETTLE_S)
    metrics: Metrics = {"rss_before": gateway.rss_mib()}
    files_before = gateway.open_files()
    metrics |= await _probe_or_note(probe, limits, "probe_idle", failures)
    crowd = await open_crowd(gateway, kernel_ids, count, limits)
    try:
        failures.update(crowd.failures)
        await asyncio.sleep(SETTLE_S)
        still_open = sum(1 for channels in crowd.opened if not crowd.readers[channels].done())
        metrics |= {"opened": len(crowd.opened), "worked": len(crowd.worked), "failed": count - len(crowd.worked),
                    "dropped": sum(1 for channels in crowd.worked if crowd.readers[channels].done()),
                    "rss_open": gateway.rss_mib()}
        if crowd.opened_at:
            metrics["open_s"] = max(crowd.opened_at)
        if len(crowd.replied_at) == count:
            metrics["replied_s"] = max(crowd.replied_at)
        files_open = gateway.open_files()
        metrics["fds_open"] = files_open["fds"]
        if still_open:
            metrics["rss_per_conn"] = (metrics["rss_open"] - metrics["rss_before"]) * 1024 / still_open
            metrics["fds_per_conn"] = (files_open["fds"] - files_before["fds"]) / still_open
            metrics["kernel_tcp_per_conn"] = (files_open["kernel_tcp"] - files_before["kernel_tcp"]) / still_open
        metrics |= await _probe_or_note(probe, limits, "probe_open", failures)
        for channels in crowd.worked:
            if crowd.readers[channels].done():
                failures[f"worked, then {crowd.readers[channels].result()}"] += 1
    finally:
        await close_crowd(crowd)
    await asyncio.sleep(SETTLE_S)
    metrics["rss_closed"] = gateway.rss_mib()
    return metrics, failures


def measure(only: str, counts: Sequence[int], kernels: int, runs: int, limits: Limits, daemon_open_files: int,
             auth_token: str | None) -> tuple[dict[str, Metrics | None], dict[str, Counter[str]]]:
    """Metrics per gateway column (None when not run) and the failures each gateway had, by kind."""
    failures: dict[str, Counter[str]] = {}

    def measure_gateway(name: str) -> Metrics:
        metrics: Metrics = {}
        failures[name] = Counter()
        for count in counts:
            with running_gateway(name, auth_token=auth_token, extra_args=UNLIMITED_IOPUB_ARGS[name],
                                 open_files=daemon_open_files) as gateway:
                for run in range(1, runs + 1):
                    tag = round_tag(count, run, runs)
                    print(f"[{name}] {tag}: {count} connections over {kernels} stand-in kernels", flush=True)
                    measured, failed = asyncio.run(_round(gateway, count, kernels, limits))
                    metrics |= {f"{key}.{tag}": value for key, value in measured.items()}
                    failures[name].update({f"[{tag}] {kind}": n for kind, n in failed.items()})
        return metrics

    columns: dict[str, Metrics | None] = {"kgd": None, "reference": None}
    columns |= measure_each(selected_gateways(only), measure_gateway)
    return columns, failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, runs_default=1, runs_help="rounds per N on the same daemon (default: 1)")
    parser.add_argument("--connections", type=int_list, default=(1000, 5000),
                        help="numbers of concurrent connections, comma-separated (default: 1000,5000)")
    parser.add_argument("--kernels", type=int, default=10,
                        help="stand-in kernels the connections are spread over (default: 10)")
    parser.add_argument("--parallel", type=int, default=200, help="handshakes in flight at once (default: 200)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds for each handshake, each reply and each probe (default: 30)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="bound on opening all N connections and getting their replies (default: 600)")
    parser.add_argument("--probes", type=int, default=200, help="probe round trips per state (default: 200)")
    parser.add_argument("--daemon-open-files", type=int, default=None,
                        help="the daemon's soft RLIMIT_NOFILE (default: the hard limit)")
    args = parser.parse_args(argv)
    client_limit = set_open_files_limit()
    needed = max(args.connections) + 100
    if client_limit < needed:
        print(f"warning: this client may open only {client_limit} files, fewer than {needed}", file=sys.stderr)
    daemon_open_files = args.daemon_open_files or resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = Limits(parallel=args.parallel, timeout=args.timeout, max_seconds=args.max_seconds, probes=args.probes)
    columns, failures = measure(args.only, args.connections, args.kernels, args.runs, limits, daemon_open_files,
                                args.auth_token)
    print_table(f"Connections over {args.kernels} stand-in kernels (daemon RLIMIT_NOFILE {daemon_open_files}, "
                f"timeout {limits.timeout:g} s, bound {limits.max_seconds:g} s)",
                columns, rows(args.connections, args.runs))
    print_failures(failures)


if __name__ == "__main__":
    main()
