"""Remote kernels over SSH: start, restart and delete times, and what they cost the rest of the gateway.

Runs the same set-up as ``tests/integration/test_ssh_provisioner.py`` (a
private sshd on 127.0.0.2, gateway-provisioners' distributed-provisioner,
kgd on ``twistd -r asyncio``) twice: with gateway-provisioners' own socket
timeout (``GP_SOCKET_TIMEOUT=0.01``) and with kgd's default (``0``,
non-blocking).  For each it prints the median time to start, restart and
delete a remote kernel, and the latency of ``GET /api`` before any remote
kernel and while one runs.  Needs root, openssh-server and gateway_provisioners.

    python benchmarks/remote_kernels.py [rounds]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from tests.integration.daemon import Client, Daemon  # noqa: E402
from tests.integration.sshd import SshServer, free_port, missing  # noqa: E402
from tests.integration.test_ssh_provisioner import install_ssh_kernelspec  # noqa: E402


@defer.inlineCallbacks
def timed(action: Any) -> Any:
    start = time.perf_counter()
    yield action()
    return (time.perf_counter() - start) * 1000


@defer.inlineCallbacks
def api_latency(client: Client, n: int = 200) -> Any:
    samples = []
    for _ in range(n):
        samples.append((yield timed(lambda: client.request("GET", "/api"))))
    samples.sort()
    return f"median {samples[n // 2]:.1f} ms, p90 {samples[int(n * 0.9)]:.1f} ms"


@defer.inlineCallbacks
def measure(root: str, sshd: SshServer, jupyter_path: str, socket_timeout: str, rounds: int) -> Any:
    daemon = Daemon(
        ["--list-kernels"],
        env={
            "JUPYTER_PATH": jupyter_path,
            "HOME": sshd.home,
            "GP_SSH_PORT": str(sshd.port),
            "GP_UNAUTHORIZED_USERS": "nobody",
            "GP_RESPONSE_IP": "127.0.0.1",
            "GP_RESPONSE_PORT": str(free_port("127.0.0.1")),
            "GP_KERNEL_LOG_DIR": root,
            "GP_SOCKET_TIMEOUT": socket_timeout,
        },
        twistd_args=("-r", "asyncio"),
    )
    yield daemon.start()
    client = Client(daemon)
    try:
        idle = yield api_latency(client)
        starts, restarts, deletes = [], [], []
        running = None
        for _ in range(rounds):
            begin = time.perf_counter()
            _, _, model = yield client.request("POST", "/api/kernels", {"name": "ssh_python"})
            starts.append((time.perf_counter() - begin) * 1000)
            if running is None:
                running = yield api_latency(client)
            restarts.append((yield timed(lambda: client.request("POST", f"/api/kernels/{model['id']}/restart"))))
            deletes.append((yield timed(lambda: client.request("DELETE", f"/api/kernels/{model['id']}"))))
    finally:
        yield daemon.stop()
    print(f"GP_SOCKET_TIMEOUT={socket_timeout}")
    print(f"  start   median {statistics.median(starts):.0f} ms  restart median {statistics.median(restarts):.0f} ms  delete median {statistics.median(deletes):.0f} ms")
    print(f"  GET /api before any remote kernel: {idle}; with one running: {running}")


@defer.inlineCallbacks
def main(reactor: Any, rounds: str = "5") -> Any:
    reason = missing()
    if reason:
        raise SystemExit(reason)
    root = tempfile.mkdtemp(prefix="kgd-bench-ssh-")
    try:
        jupyter_path = install_ssh_kernelspec(os.path.join(root, "prefix"))
        sshd = SshServer(os.path.join(root, "sshd"))
        yield sshd.start()
        try:
            for socket_timeout in ("0.01", "0"):
                yield measure(root, sshd, jupyter_path, socket_timeout, int(rounds))
        finally:
            yield sshd.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
