"""Failover: from ``kill -9`` of the replica that owns a kernel to the client's first execute_reply.

Why: with replicas on a Redis store, losing a replica should cost its users
a pause, not their kernels. The pause is bounded by the lease: another
replica takes the kernel over once the dead owner's lease expires, about
``ttl + ttl/3`` after the kill (renewals every ``ttl/3``). This measures what
a client behind the balancer actually waits, for each ``--lease-ttl``.

Each run starts a fresh cluster (``_cluster.running_cluster``: Redis,
``--replicas`` kgd replicas, HAProxy round robin in front), starts one kernel
through the balancer, reads its owner from Redis (``kgd:lease:<id>``), and
opens the channels WebSocket through the balancer with a ``session_id``,
reopening until HAProxy's ``X-Served-By`` says the owner serves it (the case
where the client's own connection dies). It runs ``x = 42``, then SIGKILLs the
owner and starts the clock. The client then does what a notebook client
does: it sends ``execute_request`` ``print(x)``, and every ``--retry-interval``
without a reply sends it again; when its WebSocket closes it reconnects
through the balancer with the same ``session_id`` (HAProxy sends it to a live
replica). The clock stops at the first ``execute_reply`` to any of those
requests; ``state kept`` counts runs whose reply was ``ok`` (``x`` still defined;
meaningful for the ``python3`` kernel only). The result's resolution is the
retry interval (a request sent before the takeover may be dropped). Also
printed: when Redis shows another replica holding the kernel's lease (polled
every 50 ms from the reply on), i.e. when supervision (restart, interrupt,
shutdown) is back; the relay itself may come back sooner, since any replica
serves any kernel's channels.

Run: ``python3 benchmarks/failover.py [--lease-ttls 3,10] [--runs 5] [--replicas 2] [--kernel python3|standin]``
(uses the installed kgd: ``pip install --no-deps /work/main``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from _cluster import Cluster, missing, running_cluster
from _gateways import IPYKERNEL, STANDIN_KERNEL, kgd_available
from _kernel_client import execute_content, new_message, set_nodelay, start_kernel
from _report import Metrics, Row, print_table

OPEN_TIMEOUT_S = 5.0
OWNER_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Outcome:
    """One failover: seconds from the kill to the first execute_reply, and what it took."""

    seconds: float
    status: str
    reconnects: int
    requests: int
    new_owner: int | None
    takeover_s: float | None


async def _open(cluster: Cluster, kernel_id: str, session: str) -> tuple[ClientConnection, str]:
    """The channels WebSocket through the balancer, and the replica HAProxy sent it to."""
    url = f"{cluster.lb.ws_url}/api/kernels/{kernel_id}/channels?session_id={session}"
    ws = await asyncio.wait_for(
        connect(url, compression=None, max_size=None, ping_interval=None, open_timeout=OPEN_TIMEOUT_S), OPEN_TIMEOUT_S
    )
    set_nodelay(ws.transport.get_extra_info("socket"))
    return ws, ws.response.headers.get("X-Served-By", "?")


async def _open_on(cluster: Cluster, kernel_id: str, session: str, replica: int) -> ClientConnection:
    """Reopen through the balancer until the WebSocket lands on ``replica`` (round robin: a few tries)."""
    for _ in range(4 * len(cluster.replicas)):
        ws, served_by = await _open(cluster, kernel_id, session)
        if served_by == cluster.replicas[replica].replica_id:
            return ws
        await ws.close()
    raise RuntimeError(f"HAProxy never sent the WebSocket to replica {replica}")


async def _execute(ws: ClientConnection, code: str, session: str) -> dict:
    request = new_message("execute_request", execute_content(code), session)
    await ws.send(json.dumps(request))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if reply.get("channel") == "shell" and reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
            return reply


async def _wait_owner(cluster: Cluster, kernel_id: str, excluding: int | None = None,
                      timeout: float = OWNER_TIMEOUT_S) -> int | None:
    """The replica holding the kernel's lease (other than ``excluding``), polled every 50 ms; None at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owner = await asyncio.to_thread(cluster.owner, kernel_id)
        if owner is not None and owner != excluding:
            return owner
        await asyncio.sleep(0.05)
    return None


async def _failover(cluster: Cluster, kernel: str, retry_interval: float, give_up_s: float) -> Outcome:
    kernel_id = await asyncio.to_thread(start_kernel, cluster.lb, kernel)
    owner = await _wait_owner(cluster, kernel_id)
    if owner is None:
        raise RuntimeError(f"no replica holds a lease on kernel {kernel_id}")
    session = uuid.uuid4().hex
    ws: ClientConnection | None = await _open_on(cluster, kernel_id, session, owner)
    await _execute(ws, "x = 42", session)

    began = time.perf_counter()
    cluster.kill(owner)
    sent: set[str] = set()
    reconnects = 0
    deadline = began + give_up_s
    while time.perf_counter() < deadline:
        try:
            if ws is None:
                reconnects += 1
                ws, _ = await _open(cluster, kernel_id, session)
            request = new_message("execute_request", execute_content("print(x)"), session)
            await ws.send(json.dumps(request))
            sent.add(request["header"]["msg_id"])
            resend_at = time.perf_counter() + retry_interval
            while (wait := resend_at - time.perf_counter()) > 0:
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), wait))
                except TimeoutError:
                    break
                if message.get("channel") == "shell" and message["parent_header"].get("msg_id") in sent:
                    seconds = time.perf_counter() - began
                    await ws.close()
                    new_owner = await _wait_owner(cluster, kernel_id, excluding=owner, timeout=give_up_s)
                    takeover_s = time.perf_counter() - began if new_owner is not None else None
                    return Outcome(seconds, message["content"].get("status", "?"), reconnects, len(sent), new_owner,
                                   takeover_s)
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
            ws = None
            await asyncio.sleep(0.05)
    raise RuntimeError(f"no execute_reply within {give_up_s:.0f} s of the kill")


def measure(lease_ttl: float, runs: int, replicas: int, kernel: str, retry_interval: float) -> Metrics:
    """Run ``runs`` failovers at this lease TTL, each on a fresh cluster; print each, return the summary."""
    outcomes: list[Outcome] = []
    for run in range(1, runs + 1):
        try:
            with running_cluster(replicas, lease_ttl) as cluster:
                outcome = asyncio.run(_failover(cluster, kernel, retry_interval, give_up_s=4 * lease_ttl + 60))
        except Exception as exc:  # noqa: BLE001 - report the run and go on with the next
            print(f"[ttl {lease_ttl:g} s] run {run}: error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            continue
        outcomes.append(outcome)
        print(f"[ttl {lease_ttl:g} s] run {run}: {outcome.seconds:.2f} s to execute_reply ({outcome.status}), "
              f"{outcome.reconnects} reconnects, {outcome.requests} requests; "
              f"replica-{outcome.new_owner} holds the lease {outcome.takeover_s or float('nan'):.2f} s after the kill",
              flush=True)
    metrics: Metrics = {"bound": lease_ttl * 4 / 3, "runs": float(len(outcomes))}
    if outcomes:
        seconds = [outcome.seconds for outcome in outcomes]
        metrics |= {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
                    "kept": float(sum(outcome.status == "ok" for outcome in outcomes))}
        takeovers = [outcome.takeover_s for outcome in outcomes if outcome.takeover_s is not None]
        if takeovers:
            metrics |= {"takeover_median": statistics.median(takeovers), "takeover_max": max(takeovers)}
    return metrics


ROWS = (
    Row("kill -9 -> first execute_reply, median (s)", "median", "{:.2f}"),
    Row("kill -9 -> first execute_reply, min (s)", "min", "{:.2f}"),
    Row("kill -9 -> first execute_reply, max (s)", "max", "{:.2f}"),
    Row("kill -9 -> another replica holds the lease, median (s)", "takeover_median", "{:.2f}"),
    Row("kill -9 -> another replica holds the lease, max (s)", "takeover_max", "{:.2f}"),
    Row("expected takeover bound, ttl + ttl/3 (s)", "bound", "{:.2f}"),
    Row("runs that completed", "runs", "{:.0f}"),
    Row("runs with state kept (reply ok)", "kept", "{:.0f}"),
)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease-ttls", type=_float_list, default=(3.0, 10.0),
                        help="--lease-ttl values to measure, comma-separated (default: 3,10)")
    parser.add_argument("--runs", type=int, default=5, help="failovers per TTL, each on a fresh cluster (default: 5)")
    parser.add_argument("--replicas", type=int, default=2, help="replicas in the cluster (default: 2)")
    parser.add_argument("--kernel", choices=(IPYKERNEL, STANDIN_KERNEL), default=IPYKERNEL,
                        help="kernelspec (default: python3, a real ipykernel)")
    parser.add_argument("--retry-interval", type=float, default=0.25,
                        help="seconds without a reply before the client sends its execute again (default: 0.25)")
    args = parser.parse_args(argv)
    reason = missing() or (None if kgd_available() else "kgd is not installed (pip install --no-deps /work/main)")
    if reason:
        raise SystemExit(reason)
    columns: dict[str, Metrics | None] = {
        f"ttl {ttl:g} s": measure(ttl, args.runs, args.replicas, args.kernel, args.retry_interval)
        for ttl in args.lease_ttls
    }
    print_table(f"Failover: SIGKILL of a kernel's owner among {args.replicas} replicas behind HAProxy, "
                f"{args.kernel} kernel, {args.runs} runs per TTL", columns, ROWS)


if __name__ == "__main__":
    main()
