"""Run every kgd benchmark and print all their tables.

Why: one command gives the whole side-by-side picture (kernel start and
memory, channels WebSocket, notebook-http, fan-out, connections, many kernels,
fairness) with each script's defaults, so runs on different days or commits
can be compared table by table. ``--quick`` runs each with a small workload
(a couple of minutes in all on an idle machine): a check that everything
works, not numbers to compare.

Run: ``python3 benchmarks/run_all.py [--quick] [--benchmarks a,b] [--only kgd|reference|both] [--runs N]
[--auth-token T]`` (``--runs`` overrides every script's own default; see each script's ``--help``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import connections
import fairness
import fanout
import kernel_start
import many_kernels
import notebook_http
import ws_roundtrip

BENCHMARKS: dict[str, Callable[[list[str]], None]] = {
    "kernel_start": kernel_start.main,
    "ws_roundtrip": ws_roundtrip.main,
    "notebook_http": notebook_http.main,
    "fanout": fanout.main,
    "connections": connections.main,
    "many_kernels": many_kernels.main,
    "fairness": fairness.main,
}
# Each benchmark's small workload for --quick.
QUICK_ARGS: dict[str, list[str]] = {
    "kernel_start": ["--runs", "2"],
    "ws_roundtrip": ["--count", "50", "--runs", "2", "--kernels", "2", "--per-kernel", "10"],
    "notebook_http": ["--requests", "200", "--runs", "1"],
    "fanout": ["--kernels", "8", "--duration", "3"],
    "connections": ["--connections", "200", "--probes", "50", "--timeout", "10", "--max-seconds", "60"],
    "many_kernels": ["--kernels", "20"],
    "fairness": ["--runs", "2", "--probes", "50"],
}


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The command-line options passed on to every benchmark."""
    argv = ["--only", args.only]
    if args.runs is not None:
        argv += ["--runs", str(args.runs)]
    if args.auth_token:
        argv += ["--auth-token", args.auth_token]
    return argv


def _benchmark_list(text: str) -> list[str]:
    names = text.split(",")
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s) {sorted(unknown)}; choose from {list(BENCHMARKS)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("kgd", "reference", "both"), default="both",
                        help="which gateway(s) to benchmark (default: both)")
    parser.add_argument("--runs", type=int, default=None, help="override every script's --runs")
    parser.add_argument("--auth-token", default=None, help="run the gateways with this auth token")
    parser.add_argument("--quick", action="store_true", help="small workloads: a couple of minutes in all")
    parser.add_argument("--benchmarks", type=_benchmark_list, default=list(BENCHMARKS),
                        help=f"comma-separated subset to run (default: all of {','.join(BENCHMARKS)})")
    args = parser.parse_args(argv)
    began_all = time.monotonic()
    for name in args.benchmarks:
        began = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        BENCHMARKS[name]([*(QUICK_ARGS[name] if args.quick else []), *_forwarded(args)])
        print(f"({name} took {time.monotonic() - began:.0f}s)", flush=True)
    print(f"\n(all took {time.monotonic() - began_all:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
