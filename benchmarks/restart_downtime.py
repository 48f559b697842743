"""Restart downtime: how long a gateway restart interrupts its users, and what it keeps.

For N kernels (stand-in kernels by default, so 50 fit on a small machine):
start the gateway, start N kernels, connect one client and run an execute,
then SIGTERM the gateway and start a new one on the same port.  Printed:

- ``sigterm->ready``: from SIGTERM to the new gateway answering ``/readyz``
  (kgd, which adopts every kernel first) or ``/api`` (the reference);
- ``adopt ms``: kgd's own adoption time, from its "adopted N of N" log
  line (the part this feature adds to twistd's start);
- ``client wait``: from the client seeing its WebSocket close to its first
  ``execute_reply`` after reconnecting to the same kernel (reference: the
  kernel is gone, so the client must start a new one and loses its state);
- ``kept``: kernels listed by the new gateway;
- ``output lost s`` (``--kernel python3``, kgd): a thread in the kernel prints
  its clock every 10 ms through the restart; the gap between the last tick
  the client saw before the close and the first after reconnecting is the
  window in which the kernel's output reached no daemon (iopub is PUB/SUB:
  what is published while nobody subscribes is gone).

kgd runs with ``--kernel-store`` (``--on-stop detach`` is then the default).

    python benchmarks/restart_downtime.py [--counts 1,10,50] [--kernel standin|python3] [--only kgd|reference|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from _gateways import (
    STANDIN_KERNEL,
    Gateway,
    _gateway_env,
    _kgd_command,
    _reference_command,
    _terminate_leftovers,
    _DescendantTracker,
    free_port,
    int_list,
    selected_gateways,
    write_kernelspecs,
)
from _kernel_client import Channels, rest

_ADOPTED = re.compile(r"adopted (\d+) of (\d+) recorded kernels in (\d+)ms")
_TICKER = (
    "import threading, time\n"
    "def _tick():\n"
    "    while True:\n"
    "        print('tick', time.time(), flush=True)\n"
    "        time.sleep(0.01)\n"
    "threading.Thread(target=_tick, daemon=True).start()"
)


def _ticks(frame: str | bytes) -> list[float]:
    """The kernel clock readings in one channels message (none unless it is the ticker's stream)."""
    message = json.loads(frame)
    if message.get("msg_type") != "stream":
        return []
    return [float(line.split()[1]) for line in message["content"]["text"].splitlines() if line.startswith("tick ")]


async def _read_ticks_until_close(channels: Channels, last: list[float], seen: asyncio.Event) -> None:
    """Keep the last tick in ``last`` until the gateway closes the WebSocket; ``seen`` once one arrived."""
    try:
        async for frame in channels._ws:
            ticks = _ticks(frame)
            if ticks:
                last[:] = [ticks[-1]]
                seen.set()
    except Exception:  # the daemon went: the close is what we waited for
        pass


async def _first_tick(channels: Channels) -> float:
    while True:
        ticks = _ticks(await asyncio.wait_for(channels._ws.recv(), 30))
        if ticks:
            return ticks[0]


def _ready(url: str, deadline: float, process: subprocess.Popen[bytes]) -> float:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"not ready at {url}")


def _spawn(name: str, port: int, workdir: Path, store: Path, log: Path) -> subprocess.Popen[bytes]:
    if name == "kgd":
        command = [*_kgd_command(port, None, None), "--kernel-store", str(store), "--list-kernels"]
    else:
        command = [*_reference_command(port, None, None), "--JupyterWebsocketPersonality.list_kernels=True"]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=workdir, env=_gateway_env(workdir / "jupyter"), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(name: str, count: int, kernel: str) -> dict[str, object]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"kgd-restart-{name}-") as tmp:
        workdir = Path(tmp)
        write_kernelspecs(workdir / "jupyter")
        store = workdir / "store"
        log = workdir / "gateway.log"
        gateway = Gateway(name, port, 0, None)
        ready_path = "/readyz" if name == "kgd" else "/api"
        first = _spawn(name, port, workdir, store, log)
        trackers = [_DescendantTracker(first.pid)]
        second = None
        try:
            with trackers[0]:
                _ready(gateway.base_url + ready_path, time.monotonic() + 90, first)
                ids = [rest(gateway, "POST", "/api/kernels", {"name": kernel})["id"] for _ in range(count)]

                async def run() -> dict[str, object]:
                    nonlocal second
                    channels = await Channels.open(gateway, ids[0])
                    await channels.execute("x = 42")
                    ticking = kernel != STANDIN_KERNEL
                    last_tick: list[float] = []
                    if ticking:
                        await channels.execute(_TICKER)
                        seen = asyncio.Event()
                        reading = asyncio.ensure_future(_read_ticks_until_close(channels, last_tick, seen))
                        await seen.wait()
                    closing = asyncio.ensure_future(channels._ws.wait_closed())
                    sent = time.perf_counter()
                    first.send_signal(signal.SIGTERM)
                    await closing
                    closed_at = time.perf_counter()
                    close_code = channels._ws.close_code
                    await asyncio.to_thread(first.wait, 60)
                    second = _spawn(name, port, workdir, store, log)
                    trackers.append(_DescendantTracker(second.pid))
                    trackers[1].__enter__()
                    ready_at = await asyncio.to_thread(_ready, gateway.base_url + ready_path, time.monotonic() + 90, second)
                    kept = len(rest(gateway, "GET", "/api/kernels"))
                    target = ids[0] if kept else rest(gateway, "POST", "/api/kernels", {"name": kernel})["id"]
                    reconnected = await Channels.open(gateway, target)
                    first_after = await _first_tick(reconnected) if ticking and kept else None
                    await reconnected.execute("print(1)")
                    replied_at = time.perf_counter()
                    await reconnected.close()
                    row: dict[str, object] = {
                        "close code": close_code, "sigterm->ready s": round(ready_at - sent, 3),
                        "client wait s": round(replied_at - closed_at, 3), "kept": f"{kept}/{count}",
                    }
                    if first_after is not None and last_tick:
                        await reading
                        row["output lost s"] = round(first_after - last_tick[0], 3)
                    return row

                row = asyncio.run(run())
                adoptions = _ADOPTED.findall(log.read_text(errors="replace"))
                if adoptions:  # the second daemon's
                    done, recorded, took = adoptions[-1]
                    row["adopted"] = f"{done}/{recorded}"
                    row["adopt ms"] = int(took)
                return row
        finally:
            for process in (first, second):
                if process is not None:
                    _stop(process)
            for tracker in trackers:
                tracker.__exit__(None, None, None)
                _terminate_leftovers(tracker.seen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int_list, default=(1, 10, 50))
    parser.add_argument("--kernel", default=STANDIN_KERNEL)
    parser.add_argument("--only", default="both", choices=("kgd", "reference", "both"))
    args = parser.parse_args(argv)
    for count in args.counts:
        for name in selected_gateways(args.only):
            try:
                row = measure(name, count, args.kernel)
            except Exception as error:  # report and go on with the next row
                row = {"error": str(error)[:200]}
            print(json.dumps({"gateway": name, "kernels": count, "kernel": args.kernel, **row}))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
