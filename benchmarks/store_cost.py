"""What a kernel store costs the REST API: kernel POST/GET/DELETE latency with no store, a file store and Redis.

Why: with ``--kernel-store`` every start, restart and shutdown also writes
(or removes) a record, and with Redis takes a lease and a ``--max-kernels``
slot over the network; a GET may read the store. This is that price per
request, on one daemon each time (no replicas, no balancer), so the store is
the only difference between the columns.

The first column is the reference gateway (no store) on the same requests. For each other configuration, one kgd (the installed one, via ``running_gateway``)
with ``--list-kernels`` and: nothing; ``--kernel-store file:///<temp dir>``;
``--kernel-store redis://127.0.0.1:<port>/0`` on a private ``redis-server``
(``_cluster.running_redis``). After ``WARMUP`` untimed cycles, ``--kernels``
(default 30) times: ``POST /api/kernels`` (``--kernel``, default the
``standin`` kernel, so kernel start-up is cheap: still, kgd answers a POST only
once the kernel answers ``kernel_info``, so POST is mostly the kernel's start), then
``--gets`` (10) ``GET /api/kernels/{id}`` and as many ``GET /api/kernels``,
then ``DELETE /api/kernels/{id}`` (answered once the kernel is gone). Each
request is timed from send to the end of the response, on a new loopback
connection. Printed: p50 and p99 per request kind.

Run: ``python3 benchmarks/store_cost.py [--kernels 30] [--gets 10] [--kernel standin|python3]``
(uses the installed kgd: ``pip install --no-deps /work/main``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _cluster import missing, redis_url, running_redis
from _gateways import IPYKERNEL, STANDIN_KERNEL, Gateway, kgd_available, measure_each, running_gateway
from _kernel_client import rest
from _report import Metrics, Row, percentile, print_table

WARMUP = 3
KINDS = ("POST", "GET", "list", "DELETE")
LABELS = {"POST": "POST /api/kernels", "GET": "GET /api/kernels/{id}", "list": "GET /api/kernels",
          "DELETE": "DELETE /api/kernels/{id}"}


@contextmanager
def _store_args(store: str) -> Iterator[list[str]]:
    """The kgd flags of one configuration, with its store running for the block."""
    if store == "no store":
        yield []
    elif store == "file store":
        with tempfile.TemporaryDirectory(prefix="kgd-bench-store-") as directory:  # 0700, as kgd requires
            yield ["--kernel-store", Path(directory).as_uri()]
    else:
        with tempfile.TemporaryDirectory(prefix="kgd-bench-redis-") as workdir:
            with running_redis(Path(workdir)) as port:
                yield ["--kernel-store", redis_url(port)]


def _timed(samples: list[float], call: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    result = call()
    samples.append((time.perf_counter() - began) * 1000)
    return result


def _cycles(gateway: Gateway, kernel: str, count: int, gets: int, samples: dict[str, list[float]] | None) -> None:
    """``count`` kernels each POSTed, read ``gets`` times (one and the list) and DELETEd; timed into ``samples``."""
    scratch: dict[str, list[float]] = {kind: [] for kind in KINDS}
    into = samples if samples is not None else scratch
    for _ in range(count):
        kernel_id = _timed(into["POST"], lambda: rest(gateway, "POST", "/api/kernels", {"name": kernel}))["id"]
        for _ in range(gets):
            _timed(into["GET"], lambda: rest(gateway, "GET", f"/api/kernels/{kernel_id}"))
            _timed(into["list"], lambda: rest(gateway, "GET", "/api/kernels"))
        _timed(into["DELETE"], lambda: rest(gateway, "DELETE", f"/api/kernels/{kernel_id}"))


REFERENCE = "reference"


@contextmanager
def _running(store: str) -> Iterator[Gateway]:
    """The gateway of one column: the reference (which has no store) or kgd with that store."""
    if store == REFERENCE:
        with running_gateway("reference", extra_args=["--JupyterWebsocketPersonality.list_kernels=True"]) as gateway:
            yield gateway
        return
    with _store_args(store) as args, running_gateway("kgd", extra_args=["--list-kernels", *args],
                                                     ready_path="/readyz") as gateway:
        yield gateway


def measure_store(store: str, kernel: str, count: int, gets: int) -> Metrics:
    with _running(store) as gateway:
        _cycles(gateway, kernel, WARMUP, gets, None)
        samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
        _cycles(gateway, kernel, count, gets, samples)
    metrics: Metrics = {}
    for kind, values in samples.items():
        metrics[f"p50.{kind}"] = percentile(values, 50)
        metrics[f"p99.{kind}"] = percentile(values, 99)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=30, help="timed kernels per configuration (default: 30)")
    parser.add_argument("--gets", type=int, default=10, help="GETs of each kind per kernel (default: 10)")
    parser.add_argument("--kernel", choices=(STANDIN_KERNEL, IPYKERNEL), default=STANDIN_KERNEL,
                        help="kernelspec (default: standin, the cheap stand-in kernel)")
    parser.add_argument("--stores", default="reference,no store,file store,redis store",
                        help="configurations, comma-separated (default: reference,no store,file store,redis store; "
                             "the reference gateway has no store)")
    args = parser.parse_args(argv)
    stores = args.stores.split(",")
    reason = (missing(haproxy=False) if "redis store" in stores else None) or (
        None if kgd_available() else "kgd is not installed (pip install --no-deps /work/main)")
    if reason:
        raise SystemExit(reason)
    columns = measure_each(stores, lambda store: measure_store(store, args.kernel, args.kernels, args.gets))
    rows = [Row(f"{LABELS[kind]} {q} (ms)", f"{q}.{kind}", "{:.2f}") for kind in KINDS for q in ("p50", "p99")]
    print_table(f"Kernel REST latency by store: {args.kernels} {args.kernel} kernels, {args.gets} GETs each",
                columns, rows)


if __name__ == "__main__":
    main()
