"""Run every kgd benchmark and print all their tables.

Why: one command gives the whole side-by-side picture (kernel start and
memory, channels WebSocket, notebook-http) with each script's defaults, so
runs on different days or commits can be compared table by table.

Run: ``python3 benchmarks/run_all.py [--only kgd|reference|both] [--runs N] [--auth-token T]``
(``--runs`` overrides every script's own default; see each script's ``--help``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import kernel_start
import notebook_http
import ws_roundtrip

BENCHMARKS: dict[str, Callable[[list[str]], None]] = {
    "kernel_start": kernel_start.main,
    "ws_roundtrip": ws_roundtrip.main,
    "notebook_http": notebook_http.main,
}


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The command-line options passed on to every benchmark."""
    argv = ["--only", args.only]
    if args.runs is not None:
        argv += ["--runs", str(args.runs)]
    if args.auth_token:
        argv += ["--auth-token", args.auth_token]
    return argv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("kgd", "reference", "both"), default="both",
                        help="which gateway(s) to benchmark (default: both)")
    parser.add_argument("--runs", type=int, default=None, help="override every script's --runs")
    parser.add_argument("--auth-token", default=None, help="run the gateways with this auth token")
    args = parser.parse_args(argv)
    for name, benchmark in BENCHMARKS.items():
        began = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        benchmark(_forwarded(args))
        print(f"({name} took {time.monotonic() - began:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
