"""Replica throughput: executes/s for 8 kernels through HAProxy with 1, 2 and 3 kgd replicas on Redis.

Why: replicas are for availability, but they also split the relay work
(each WebSocket is served by whichever replica HAProxy picked, which need
not own the kernel); this shows what that costs or gains against one daemon
with no store and no balancer, on this 2-core machine where client, HAProxy,
replicas and kernels share the CPU.

The workload is ``fanout.py``'s, reused as is (``fanout._fan_out``): ``--kernels``
(8) kernels started through the front end, one channels WebSocket each (legacy
JSON, the ``websockets`` library), 5 warm-up executes, then every kernel
runs ``execute('pass')`` back to back for ``--duration`` seconds, ``--runs``
times; an execute is timed from send until iopub ``idle``. Columns: ``direct``
is one kgd with no store, no balancer (``running_gateway``); ``N replicas``
is ``_cluster.running_cluster(N)``: Redis, N replicas with ``--kernel-store
redis://``, HAProxy round robin with no affinity in front, every request and
WebSocket through HAProxy. Rows are ``fanout.py``'s; "gateway CPU" is the sum
over the replicas (HAProxy's own CPU is not counted).

Run: ``python3 benchmarks/replicas_throughput.py [--replicas 1,2,3] [--kernels 8] [--kinds standin,ipykernel]
[--duration 10]`` (uses the installed kgd: ``pip install --no-deps /work/main``).
"""

from __future__ import annotations

import argparse
import asyncio

from _cluster import missing, running_cluster
from _gateways import Gateway, int_list, kgd_available, measure_each, running_gateway
from _report import Metrics, print_table
from fanout import KINDS, FanOut, _fan_out, _kind_list, rows

DIRECT = "direct"


def _measure_front(gateway: Gateway, fan_out: FanOut, column: str) -> Metrics:
    metrics: Metrics = {}
    for kind, count in fan_out.configurations():
        print(f"[{column}] {count} {kind} kernels, {fan_out.runs} x {fan_out.duration:g} s", flush=True)
        measured = asyncio.run(_fan_out(gateway, KINDS[kind], count, fan_out.duration, fan_out.runs))
        metrics |= {f"{key}.{kind} x{count}": value for key, value in measured.items()}
    return metrics


def measure(column: str, fan_out: FanOut, lease_ttl: float) -> Metrics:
    """Metrics of one column: ``direct``, or ``N replica(s)``."""
    if column == DIRECT:
        with running_gateway("kgd") as gateway:
            return _measure_front(gateway, fan_out, column)
    with running_cluster(int(column.split()[0]), lease_ttl) as cluster:
        return _measure_front(cluster.lb, fan_out, column)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int_list, default=(1, 2, 3),
                        help="replica counts, comma-separated (default: 1,2,3)")
    parser.add_argument("--kernels", type=int_list, default=(8,), help="kernel counts, comma-separated (default: 8)")
    parser.add_argument("--kinds", type=_kind_list, default=tuple(KINDS),
                        help="kernel kinds, comma-separated: ipykernel, standin (default: both)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run (default: 10)")
    parser.add_argument("--runs", type=int, default=1, help="timed runs per configuration (default: 1)")
    parser.add_argument("--lease-ttl", type=float, default=10.0, help="the replicas' --lease-ttl (default: 10)")
    parser.add_argument("--no-direct", action="store_true", help="skip the single daemon without store or balancer")
    args = parser.parse_args(argv)
    reason = missing() or (None if kgd_available() else "kgd is not installed (pip install --no-deps /work/main)")
    if reason:
        raise SystemExit(reason)
    fan_out = FanOut(kernel_counts=args.kernels, kinds=args.kinds, duration=args.duration, runs=args.runs)
    names = ([] if args.no_direct else [DIRECT]) + [f"{n} replica{'s' if n > 1 else ''}" for n in args.replicas]
    columns = measure_each(names, lambda column: measure(column, fan_out, args.lease_ttl))
    print_table(f"Replica throughput: execute('pass') loops through HAProxy, {fan_out.runs} x {fan_out.duration:g} s "
                f"per configuration", columns, rows(fan_out))


if __name__ == "__main__":
    main()
