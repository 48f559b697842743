"""Memory under a client that never reads: the gateway's peak RSS while its kernel prints.

Why: a browser tab that hangs (or a client that stops reading on purpose)
must not make the gateway hold the kernel's output without bound. kgd holds
at most ``--max-client-backlog`` for the connection, closes it with 1008, and
then keeps at most ``--session-buffer-bytes`` for a reconnect; the reference
holds what Tornado's write buffer takes.

What is measured, per gateway: one ipykernel; a raw TCP client upgrades to
its channels WebSocket (legacy JSON, ``session_id=stalled``), sends an
``execute_request`` for a cell writing ``--mb`` MB to stdout in 64 KiB
writes, each flushed (so each is one iopub message; with ``--no-flush``
ipykernel sends what accumulates in 0.2 s, hundreds of MB), and never reads a byte after the upgrade response. The gateway's
VmRSS is sampled every 10 ms from before the request until the cell has
ended (it then creates a file) and the kernel is idle (REST
``execution_state``, at most 30 s more), and 2 s more. Reported: RSS idle
(before), the peak and its growth over idle, and RSS after the cell.

Run: ``python3 benchmarks/slow_reader.py [--only kgd|reference|both] [--mb 2000] [--bound-mib 64] [--no-flush]``
(``--bound-mib`` sets both ``--max-client-backlog`` and ``--session-buffer-bytes`` of kgd).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

from _gateways import UNLIMITED_IOPUB_ARGS, Gateway, add_common_arguments, measure_each, read_rss_kib, running_gateway, selected_gateways
from _kernel_client import execute_content, new_message, rest, start_kernel
from _report import Metrics, Row, print_table

ROWS = (
    Row("daemon RSS idle (MiB)", "idle", "{:.0f}"),
    Row("daemon RSS peak (MiB)", "peak", "{:.0f}"),
    Row("peak growth over idle (MiB)", "growth", "{:.0f}"),
    Row("daemon RSS after the cell (MiB)", "after", "{:.0f}"),
    Row("cell, send to idle (s)", "seconds", "{:.1f}"),
)
SAMPLE_S = 0.01
SETTLE_S = 2.0


def stalled_client(gateway: Gateway, kernel_id: str, code: str) -> socket.socket:
    """Upgrade to the channels WebSocket, send ``code`` to execute, and read nothing more."""
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    key = base64.b64encode(os.urandom(16)).decode()
    token = f"&token={gateway.auth_token}" if gateway.auth_token else ""
    sock.sendall((f"GET /api/kernels/{kernel_id}/channels?session_id=stalled{token} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{gateway.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: nothing after the headers is read
    if b" 101 " not in response.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"upgrade refused: {response!r}")
    payload = json.dumps(new_message("execute_request", execute_content(code), session="stalled")).encode()
    sock.sendall(client_frame(payload))
    return sock


def client_frame(payload: bytes) -> bytes:
    """A final text frame from a client, masked with a zero key (RFC 6455: shortest length encoding)."""
    size = len(payload)
    if size < 126:
        length = struct.pack("!B", 0x80 | size)
    elif size < 0x10000:
        length = struct.pack("!BH", 0x80 | 126, size)
    else:
        length = struct.pack("!BQ", 0x80 | 127, size)
    return b"\x81" + length + b"\0\0\0\0" + payload


class PeakRss:
    """Samples a process's VmRSS in a thread; ``peak`` is the largest seen, in KiB."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak = read_rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.peak = max(self.peak, read_rss_kib(self._pid))


def execution_state(gateway: Gateway, kernel_id: str) -> str:
    return rest(gateway, "GET", f"/api/kernels/{kernel_id}")["execution_state"]


def measure(gateway: Gateway, megabytes: int, flush_each: bool) -> Metrics:
    kernel_id = start_kernel(gateway)
    while execution_state(gateway, kernel_id) != "idle":
        time.sleep(0.05)
    with tempfile.TemporaryDirectory() as scratch:
        done = Path(scratch, "done")
        flush = "; sys.stdout.flush()" if flush_each else ""
        code = (f"import sys\nfor _ in range({megabytes * 16}):\n    sys.stdout.write('x' * 65536){flush}\n"
                f"open({str(done)!r}, 'w').close()\n")
        idle = read_rss_kib(gateway.pid)
        started = time.monotonic()
        with PeakRss(gateway.pid) as rss:
            client = stalled_client(gateway, kernel_id, code)
            deadline = time.monotonic() + 600
            while not done.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the cell did not finish within 600 s")
                time.sleep(0.05)
            # Past ZeroMQ's high-water mark iopub is dropped, the idle status too: wait for it a while only.
            deadline = time.monotonic() + 30
            while execution_state(gateway, kernel_id) != "idle" and time.monotonic() < deadline:
                time.sleep(0.05)
            seconds = time.monotonic() - started
            time.sleep(SETTLE_S)
    after = read_rss_kib(gateway.pid)
    client.close()
    return {"idle": idle / 1024, "peak": rss.peak / 1024, "growth": (rss.peak - idle) / 1024,
            "after": after / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, runs_default=1, runs_help="unused: one cell per gateway")
    parser.add_argument("--mb", type=int, default=2000, help="MB the cell writes to stdout")
    parser.add_argument("--no-flush", action="store_true",
                        help="do not flush after each write: ipykernel then sends what 0.2 s of writes made, one huge message")
    parser.add_argument("--bound-mib", type=int, default=64, help="kgd's --max-client-backlog and --session-buffer-bytes")
    args = parser.parse_args()
    bound = str(args.bound_mib * 1024**2)
    extra = {"kgd": ["--max-client-backlog", bound, "--session-buffer-bytes", bound],
             "reference": UNLIMITED_IOPUB_ARGS["reference"]}

    def run(name: str) -> Metrics:
        with running_gateway(name, auth_token=args.auth_token, extra_args=extra[name]) as gateway:
            return measure(gateway, args.mb, not args.no_flush)

    columns = measure_each(selected_gateways(args.only), run)
    pieces = "one message per 0.2 s" if args.no_flush else "64 KiB messages"
    print_table(f"{args.mb} MB of stdout ({pieces}) to a client that never reads (kgd bounds {args.bound_mib} MiB each)",
                columns, ROWS)


if __name__ == "__main__":
    main()
