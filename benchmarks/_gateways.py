"""Start kgd or the reference gateway for a benchmark, and clean up after it.

Every benchmark compares kgd with jupyter-kernel-gateway 3.0.1 under the same
workload, so both are started the same way: as a subprocess on a free loopback
port, with a private temporary working directory (kernel cwd, twistd pidfile,
gateway log), and handed to the benchmark once an HTTP GET answers 200.

Both gateways get the same ``python3`` kernelspec (this interpreter's
ipykernel) so that kernel start-up cost is identical on both sides, and the
``standin`` kernelspec (``standin_kernel.py``, a few-MiB protocol-correct
stand-in) for measuring a gateway's own cost per kernel.

Kernels are started by the gateway in their own process groups, so stopping
the gateway's group is not enough to be sure none survives. A background
thread therefore records the gateway's descendants from /proc while it runs;
after the gateway is stopped (SIGTERM, then SIGKILL after a deadline) every
recorded process that is still alive — same PID *and* same start time, so a
reused PID is never hit — is terminated the same way. Nothing else is killed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from _procfs import open_files
from _reference import ensure_reference_venv
from _report import Metrics

GATEWAYS = ("kgd", "reference")
IPYKERNEL = "python3"
STANDIN_KERNEL = "standin"
STANDIN_SCRIPT = Path(__file__).with_name("standin_kernel.py")
# Gateway flags that turn off iopub rate limiting, so that all the output is forwarded.
UNLIMITED_IOPUB_ARGS: dict[str, list[str]] = {
    "reference": ["--ZMQChannelsWebsocketConnection.limit_rate=False"],
    "kgd": [],
}
STOP_GRACE_S = 15.0
KILL_GRACE_S = 5.0
TRACK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Gateway:
    """A running gateway as seen by a benchmark client."""

    name: str
    port: int
    pid: int
    auth_token: str | None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def headers(self) -> dict[str, str]:
        """Request headers carrying the auth token, if any."""
        return {"Authorization": f"token {self.auth_token}"} if self.auth_token else {}

    def cpu_seconds(self) -> float:
        """User + system CPU time of the gateway process (all its threads, kernels excluded)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # fields from the third on; utime, stime are 14, 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        """Resident set size of the gateway process itself (kernels excluded)."""
        return read_rss_kib(self.pid) / 1024

    def open_files(self) -> Counter[str]:
        """The gateway process's open files by kind: see ``_procfs``."""
        return open_files(self.pid, self.port)


@dataclass(frozen=True)
class NotebookHttp:
    """What a gateway needs to run in notebook-http mode."""

    seed_notebook: Path
    prespawn_count: int = 2


def add_common_arguments(parser: argparse.ArgumentParser, runs_default: int, runs_help: str) -> None:
    """Options shared by every benchmark script."""
    parser.add_argument("--only", choices=("kgd", "reference", "both"), default="both",
                        help="which gateway(s) to benchmark (default: both)")
    parser.add_argument("--runs", type=int, default=runs_default, help=runs_help)
    parser.add_argument("--auth-token", default=None,
                        help="start the gateways with this auth token and send it (default: no auth)")


def int_list(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated integers, such as ``1000,5000``."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def kgd_available() -> bool:
    """Whether kgd's twistd plugin can be loaded by this interpreter."""
    try:
        return importlib.util.find_spec("kgd.tap") is not None
    except ImportError:
        return False


def selected_gateways(only: str) -> list[str]:
    """The gateways to run for ``--only``; a missing kgd is skipped with a note under ``both``."""
    wanted = list(GATEWAYS) if only == "both" else [only]
    if "kgd" in wanted and not kgd_available():
        hint = "kgd is not installed for this interpreter (pip install -e /work/main)"
        if only == "kgd":
            raise SystemExit(hint)
        print(f"note: {hint}; its column shows n/a", file=sys.stderr)
        wanted.remove("kgd")
    return wanted


def measure_each(names: Sequence[str], measure: Callable[[str], Metrics]) -> dict[str, Metrics | None]:
    """``measure(name)`` for each gateway; one that fails shows n/a and the error, the others still run."""
    results: dict[str, Metrics | None] = {}
    for name in names:
        try:
            results[name] = measure(name)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other gateway
            print(f"error: {name} benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            results[name] = None
    return results


def free_port() -> int:
    """A currently unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_open_files_limit(soft: int | None = None) -> int:
    """Set this process's soft RLIMIT_NOFILE to ``soft`` (default and at most: the hard limit); return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if soft is None or (hard != resource.RLIM_INFINITY and soft > hard) else soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return limit


def read_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _command(name: str, port: int, auth_token: str | None, notebook: NotebookHttp | None) -> list[str]:
    if name == "kgd":
        return _kgd_command(port, auth_token, notebook)
    return _reference_command(port, auth_token, notebook)


def _kgd_command(port: int, auth_token: str | None, notebook: NotebookHttp | None) -> list[str]:
    # Same as `twistd -n kgd ...`, but with this interpreter; `python -m twisted` is `twist`, not twistd.
    cmd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "kgd",
           "--listen", f"tcp:{port}:interface=127.0.0.1"]
    if auth_token:
        cmd += ["--auth-token", auth_token]
    if notebook:
        cmd += ["--api", "notebook-http", "--seed-uri", str(notebook.seed_notebook),
                "--prespawn-count", str(notebook.prespawn_count)]
    return cmd


def _reference_command(port: int, auth_token: str | None, notebook: NotebookHttp | None) -> list[str]:
    cmd = [str(ensure_reference_venv()), "kernelgateway",
           "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
           "--KernelGatewayApp.port_retries=0"]
    if auth_token:
        cmd.append(f"--KernelGatewayApp.auth_token={auth_token}")
    if notebook:
        cmd += ["--KernelGatewayApp.api=kernel_gateway.notebook_http",
                f"--KernelGatewayApp.seed_uri={notebook.seed_notebook}",
                f"--KernelGatewayApp.prespawn_count={notebook.prespawn_count}"]
    return cmd


def _gateway_env(jupyter_dir: Path) -> dict[str, str]:
    """The caller's environment without KG_* settings, with ``jupyter_dir`` first on JUPYTER_PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KG_")}
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(jupyter_dir), env.get("JUPYTER_PATH")]))
    return env


def write_kernelspecs(jupyter_dir: Path) -> None:
    """Write the ``python3`` and ``standin`` kernelspecs, both run by this interpreter, under ``jupyter_dir/kernels``.

    ``python3`` shadows the installed ones: each gateway would otherwise launch
    kernels with its own venv's Python, whose import time differs; with this
    spec both gateways (and the floor) start the same kernel. Its history is
    kept in memory: by default every ipykernel on the machine writes each
    execute to one shared SQLite file, and with several kernels busy their
    waits for its lock (up to seconds) swamp the gateways' p99 and fairness.
    ``standin`` runs ``standin_kernel.py``, interrupted by message since it
    ignores SIGINT.
    """
    specs = {
        IPYKERNEL: {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                             "--HistoryManager.hist_file=:memory:"],
                    "display_name": "Python 3 (benchmark)", "language": "python"},
        STANDIN_KERNEL: {"argv": [sys.executable, str(STANDIN_SCRIPT), "{connection_file}"],
                         "display_name": "Stand-in kernel (benchmark)", "language": "python",
                         "interrupt_mode": "message"},
    }
    for name, spec in specs.items():
        spec_dir = jupyter_dir / "kernels" / name
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps(spec))


# --- process tracking -------------------------------------------------------------------------

def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, start time in clock ticks) for every visible process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
        table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table


def _descendants(root: int, table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """pid -> start time for every descendant of ``root``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    pending = list(children.get(root, ()))
    while pending:
        pid = pending.pop()
        found[pid] = table[pid][1]
        pending.extend(children.get(pid, ()))
    return found


class _DescendantTracker:
    """Records, while a gateway runs, every process it spawned (kernels included)."""

    def __init__(self, root: int) -> None:
        self._root = root
        self.seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="descendant-tracker", daemon=True)

    def __enter__(self) -> _DescendantTracker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.snapshot()  # the gateway is still running here: see running_gateway

    def snapshot(self) -> None:
        self.seen.update(_descendants(self._root, _process_table()))

    def _run(self) -> None:
        while not self._stop.wait(TRACK_INTERVAL_S):
            self.snapshot()


def _alive(pids: dict[int, int]) -> dict[int, int]:
    """The subset of ``pids`` that still runs as the same process (same start time)."""
    table = _process_table()
    return {pid: start for pid, start in pids.items() if pid in table and table[pid][1] == start}


def _terminate_leftovers(pids: dict[int, int]) -> list[int]:
    """SIGTERM, then SIGKILL, the recorded processes still alive; return those found alive."""
    survivors = _alive(pids)
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        for pid in _alive(survivors):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while _alive(survivors) and time.monotonic() < deadline:
            time.sleep(0.1)
    return sorted(survivors)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the gateway, SIGKILL it if it has not exited by the deadline."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=KILL_GRACE_S)


# --- startup --------------------------------------------------------------------------------

def _wait_ready(url: str, headers: dict[str, str], process: subprocess.Popen[bytes],
                timeout: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail early if the gateway exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway not ready at {url} after {timeout:.0f}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_gateway(name: str, *, auth_token: str | None = None, notebook: NotebookHttp | None = None,
                    extra_args: Sequence[str] = (), ready_path: str = "/api",
                    startup_timeout: float = 90.0, open_files: int | None = None) -> Iterator[Gateway]:
    """Run gateway ``name`` ("kgd" or "reference") for the duration of the block.

    ``extra_args`` are appended to the gateway's command line. With
    ``open_files`` the gateway starts with that soft RLIMIT_NOFILE (capped at
    the hard limit; its kernels inherit it) instead of this process's.

    On exit the gateway is stopped and any kernel it leaves behind is killed;
    a warning names the PIDs that had to be killed that way.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"kgd-bench-{name}-") as workdir:
        log = Path(workdir, "gateway.log")
        jupyter_dir = Path(workdir, "jupyter")
        write_kernelspecs(jupyter_dir)
        limit_open_files = None if open_files is None else partial(set_open_files_limit, open_files)
        with log.open("wb") as log_file:
            process = subprocess.Popen([*_command(name, port, auth_token, notebook), *extra_args], cwd=workdir,
                                       env=_gateway_env(jupyter_dir), stdin=subprocess.DEVNULL,
                                       stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=limit_open_files)
        gateway = Gateway(name=name, port=port, pid=process.pid, auth_token=auth_token)
        tracker = _DescendantTracker(process.pid)
        try:
            with tracker:
                _wait_ready(gateway.base_url + ready_path, gateway.headers(), process, startup_timeout, log)
                yield gateway
        finally:
            _stop(process)  # only after tracking stopped: a reaped PID could be reused
            leftovers = _terminate_leftovers(tracker.seen)
            if leftovers:
                print(f"warning: {name} left processes behind, killed: {leftovers}", file=sys.stderr)
