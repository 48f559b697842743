"""A private redis-server, and kgd replicas on it behind HAProxy, for the replica benchmarks.

Why: ``failover.py``, ``store_cost.py`` and ``replicas_throughput.py`` need
what ``_gateways.running_gateway`` gives one daemon (the installed kgd on a
free loopback port, in a temp working directory with the benchmark
kernelspecs, its spawned processes tracked from /proc and killed if left
behind), but for N daemons sharing a Redis store, with a balancer in front.
This module starts them the same way, with ``_gateways``' own helpers.

- ``running_redis()``: ``redis-server`` on a free 127.0.0.1 port, no
  persistence, ended by PID.
- ``running_cluster(n, lease_ttl)``: Redis, n replicas (``--kernel-store
  redis://``, ``--replica-id replica-<i>``, ``--lease-ttl``, one shared
  ``--runtime-dir``, ``--list-kernels``), each until ``/readyz`` answers, and
  HAProxy in front: round robin, no affinity, WebSocket upgrades passed
  through, each response naming its replica in ``X-Served-By`` (the same
  config as ``tests/integration/haproxy.py``, plus that header).  On exit
  every kernel is DELETEd through a live replica, then the replicas get
  SIGTERM, and any process a replica spawned that is still alive is killed
  (kernels outlive replicas by design: SIGKILL leaves them, SIGTERM detaches).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from _gateways import (Gateway, _DescendantTracker, _gateway_env, _kgd_command, _stop, _terminate_leftovers,
                       _wait_ready, free_port, write_kernelspecs)
from _kernel_client import rest

HOST = "127.0.0.1"
REDIS_SERVER = "/usr/bin/redis-server"
HAPROXY = "/usr/sbin/haproxy"
STARTUP_TIMEOUT_S = 60.0
DELETE_TIMEOUT_S = 60.0


def missing(haproxy: bool = True) -> str | None:
    """Why the replica benchmarks cannot run here (redis-server, or haproxy when wanted, not installed), or None."""
    for tool in (REDIS_SERVER, HAPROXY) if haproxy else (REDIS_SERVER,):
        if not Path(tool).exists() and shutil.which(Path(tool).name) is None:
            return f"{Path(tool).name} is not installed (apt-get install -y redis-server haproxy)"
    return None


# --- Redis --------------------------------------------------------------------------------

def redis_command(port: int, *args: str, timeout: float = 2.0) -> bytes | None:
    """One RESP command to 127.0.0.1:port; the reply's simple or bulk string (None for a nil reply)."""
    request = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n" not in reply:
            reply += sock.recv(4096) or b"\r\n"
        head, rest_ = reply.split(b"\r\n", 1)
        if head[:1] in (b"+", b":"):
            return head[1:]
        if head[:1] == b"-":
            raise RuntimeError(f"redis: {head[1:].decode(errors='replace')}")
        length = int(head[1:])
        if length < 0:
            return None
        while len(rest_) < length + 2:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest_ += chunk
        return rest_[:length]


def _answers_ping(port: int) -> bool:
    try:
        return redis_command(port, "PING") == b"PONG"
    except OSError:
        return False


@contextmanager
def running_redis(workdir: Path) -> Iterator[int]:
    """``redis-server`` on a free loopback port for the block; yields the port (see ``redis_url``)."""
    port = free_port()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [REDIS_SERVER, "--bind", HOST, "--port", str(port), "--dir", str(data), "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--logfile", ""],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not _answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING on port {port}")
            time.sleep(0.05)
        yield port
    finally:
        _stop(process)


def redis_url(port: int) -> str:
    """The ``--kernel-store`` URL of the private Redis on ``port`` (database 0)."""
    return f"redis://{HOST}:{port}/0"


# --- HAProxy ------------------------------------------------------------------------------

def haproxy_config(port: int, backends: Sequence[int]) -> str:
    """Round robin over the replicas' ports, no affinity, health checked on /healthz, ``X-Served-By`` added."""
    servers = "".join(f"    server replica-{i} {HOST}:{p} check inter 500ms fall 2 rise 1\n" for i, p in enumerate(backends))
    return (
        "global\n    maxconn 4096\n"
        "defaults\n    mode http\n    option http-server-close\n    timeout connect 2s\n"
        "    timeout client 120s\n    timeout server 120s\n    timeout tunnel 1h\n    retries 3\n    option redispatch\n"
        f"frontend gateway\n    bind {HOST}:{port}\n    default_backend replicas\n"
        "backend replicas\n    balance roundrobin\n    option httpchk GET /healthz\n    http-check expect status 200\n"
        "    http-response set-header X-Served-By %[srv_name]\n"
        f"{servers}"
    )


@contextmanager
def running_haproxy(workdir: Path, backends: Sequence[int]) -> Iterator[int]:
    """``haproxy -db`` in front of ``backends`` for the block; yields its port once it accepts connections."""
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(haproxy_config(port, backends))
    check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"haproxy rejects its config:\n{check.stdout}{check.stderr}")
    process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("haproxy did not start listening") from None
                time.sleep(0.05)
        yield port
    finally:
        _stop(process)


# --- replicas -----------------------------------------------------------------------------

@dataclass
class Replica:
    """One kgd replica process and what is needed to find and clean up after it."""

    replica_id: str
    gateway: Gateway
    process: subprocess.Popen[bytes]
    tracker: _DescendantTracker
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Cluster:
    """Running replicas, the balancer (``lb``, a ``Gateway`` whose CPU is the replicas' sum) and Redis."""

    replicas: list[Replica]
    lb: Gateway
    redis_port: int
    prefix: str = "kgd:"
    killed: list[int] = field(default_factory=list)

    def owner(self, kernel_id: str) -> int | None:
        """Index of the replica holding the kernel's lease (``<prefix>lease:<id>`` in Redis), or None."""
        value = redis_command(self.redis_port, "GET", f"{self.prefix}lease:{kernel_id}")
        ids = [replica.replica_id for replica in self.replicas]
        return ids.index(value.decode()) if value is not None and value.decode() in ids else None

    def kill(self, index: int) -> None:
        """SIGKILL replica ``index`` and reap it; its kernels keep running."""
        replica = self.replicas[index]
        replica.tracker.snapshot()  # a kernel started since the tracker's last look is still recorded
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait()
        self.killed.append(index)

    def live(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.alive]


@dataclass(frozen=True)
class Balanced(Gateway):
    """The balancer as a benchmark's ``Gateway``: its port, and the CPU time of every live replica."""

    replica_pids: tuple[int, ...] = ()

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.replica_pids:
            try:
                total += Gateway(self.name, self.port, pid, None).cpu_seconds()
            except FileNotFoundError:  # a replica killed and reaped
                pass
        return total


def _zombie(pid: int) -> bool:
    """True if ``pid`` has exited and awaits reaping: a kernel a killed replica left is reparented to PID 1,
    which may reap late; it is dead already, so not a leftover."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] == "Z"


def _delete_all(replicas: Sequence[Replica]) -> None:
    """DELETE every kernel the live replicas list, retrying while a killed owner's leases run out."""
    deadline = time.monotonic() + DELETE_TIMEOUT_S
    while time.monotonic() < deadline:
        live = [replica for replica in replicas if replica.alive]
        if not live:
            return
        listed = {kernel["id"] for replica in live for kernel in rest(replica.gateway, "GET", "/api/kernels")}
        if not listed:
            return
        for kernel_id in listed:
            try:
                rest(live[0].gateway, "DELETE", f"/api/kernels/{kernel_id}")
            except RuntimeError:  # not deletable yet (its owner died): listed again next round
                pass
        time.sleep(0.25)
    print(f"warning: kernels still listed after {DELETE_TIMEOUT_S:.0f} s of DELETEs", file=sys.stderr)


@contextmanager
def running_cluster(count: int, lease_ttl: float, extra_args: Sequence[str] = (),
                    prefix: str = "kgd:") -> Iterator[Cluster]:
    """Redis, ``count`` kgd replicas on it and HAProxy in front, for the block; everything they started ends with it."""
    with tempfile.TemporaryDirectory(prefix="kgd-bench-cluster-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        jupyter_dir = workdir / "jupyter"
        write_kernelspecs(jupyter_dir)
        runtime_dir = workdir / "runtime"
        runtime_dir.mkdir(mode=0o700)
        redis_port = stack.enter_context(running_redis(workdir))
        replicas: list[Replica] = []

        def stop_replicas() -> None:
            try:
                _delete_all(replicas)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on: the leftovers are killed below
                print(f"warning: could not delete every kernel: {type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                for replica in replicas:  # tracking stops first, as in running_gateway: a reaped PID could be reused
                    replica.tracker.__exit__(None, None, None)
                    _stop(replica.process)
                seen: dict[int, int] = {}
                for replica in replicas:
                    seen |= {pid: start for pid, start in replica.tracker.seen.items() if not _zombie(pid)}
                leftovers = _terminate_leftovers(seen)
                if leftovers:
                    print(f"warning: replicas left processes behind, killed: {leftovers}", file=sys.stderr)

        stack.callback(stop_replicas)
        for index in range(count):
            port = free_port()
            replica_id = f"replica-{index}"
            log = workdir / f"{replica_id}.log"
            args = ["--kernel-store", redis_url(redis_port), "--replica-id", replica_id, "--lease-ttl", f"{lease_ttl:g}",
                    "--redis-prefix", prefix, "--runtime-dir", str(runtime_dir), "--list-kernels", *extra_args]
            with log.open("wb") as out:
                process = subprocess.Popen([*_kgd_command(port, None, None), *args], cwd=workdir,
                                           env=_gateway_env(jupyter_dir), stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            tracker = _DescendantTracker(process.pid)
            tracker.__enter__()
            replicas.append(Replica(replica_id, Gateway("kgd", port, process.pid, None), process, tracker, log))
        for replica in replicas:
            _wait_ready(replica.gateway.base_url + "/readyz", {}, replica.process, STARTUP_TIMEOUT_S, replica.log)
        lb_port = stack.enter_context(running_haproxy(workdir, [replica.gateway.port for replica in replicas]))
        lb = Balanced("kgd", lb_port, 0, None, replica_pids=tuple(replica.process.pid for replica in replicas))
        yield Cluster(replicas, lb, redis_port, prefix)
