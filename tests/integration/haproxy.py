"""A private HAProxy on loopback: the load balancer in front of several kgd replicas.

``HAProxy(root, backends)`` writes a config that balances HTTP requests round
robin over ``backends`` (``(host, port)`` pairs) with no session affinity,
checks each backend with ``GET /healthz`` (and sends a request whose backend
refuses the connection to another one, so a killed replica costs no
request), and lets a WebSocket upgrade
through (``mode http`` forwards the upgrade; ``timeout tunnel`` keeps an idle
WebSocket open).  ``start()`` runs ``haproxy -db`` (foreground) on a free
127.0.0.1 port and fires once that port accepts connections; ``stop()`` ends
it by PID and waits for the exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Any, Sequence

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.integration.daemon import poll_until
from tests.integration.sshd import free_port

HAPROXY = "/usr/sbin/haproxy"
HOST = "127.0.0.1"
INSTALL_HINT = "apt-get update && apt-get install -y haproxy"


def missing() -> str | None:
    """Why the HAProxy tests cannot run here, or None."""
    if not os.path.exists(HAPROXY) and shutil.which("haproxy") is None:
        return f"haproxy is not installed; install with: {INSTALL_HINT}"
    return None


def config(port: int, backends: Sequence[tuple[str, int]], check_interval_ms: int = 500) -> str:
    """The haproxy configuration: one frontend on ``127.0.0.1:port``, round robin over ``backends``."""
    servers = "".join(
        f"    server replica{i} {host}:{backend_port} check inter {check_interval_ms}ms fall 2 rise 1\n"
        for i, (host, backend_port) in enumerate(backends)
    )
    return (
        "global\n"
        "    maxconn 1024\n"
        "defaults\n"
        "    mode http\n"
        "    option http-server-close\n"
        "    timeout connect 2s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "    timeout tunnel 1h\n"
        "    retries 3\n"
        "    option redispatch\n"
        "frontend gateway\n"
        f"    bind {HOST}:{port}\n"
        "    default_backend replicas\n"
        "backend replicas\n"
        "    balance roundrobin\n"
        "    option httpchk GET /healthz\n"
        "    http-check expect status 200\n"
        f"{servers}"
    )


class _Accepted(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.loseConnection()


def _accepts(port: int) -> defer.Deferred[bool]:
    d = connectProtocol(TCP4ClientEndpoint(reactor, HOST, port, timeout=2), _Accepted())
    return d.addCallbacks(lambda _: True, lambda _: False)


class _HAProxyProtocol(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class HAProxy:
    """haproxy on 127.0.0.1:<free port> in front of ``backends``."""

    def __init__(self, root: str, backends: Sequence[tuple[str, int]]) -> None:
        self.port = free_port(HOST)
        self.config_path = os.path.join(root, "haproxy.cfg")
        with open(self.config_path, "w") as f:
            f.write(config(self.port, backends))
        self.pid: int | None = None
        self._protocol = _HAProxyProtocol()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def log(self) -> str:
        return self._protocol.output.decode(errors="replace")

    @defer.inlineCallbacks
    def start(self, timeout: float = 15.0) -> Any:
        """Check the config, run ``haproxy -db``; fires once the frontend accepts connections."""
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", self.config_path], capture_output=True, text=True)
        if check.returncode != 0:
            raise AssertionError(f"haproxy rejects its config:\n{check.stdout}{check.stderr}")
        transport = reactor.spawnProcess(self._protocol, HAPROXY, [HAPROXY, "-db", "-f", self.config_path], env={})
        self.pid = transport.pid
        ended = self._protocol.ended

        def listening_or_ended() -> Any:
            if ended.called:
                raise AssertionError(f"haproxy exited before listening:\n{self.log}")
            return _accepts(self.port)

        yield poll_until(listening_or_ended, timeout=timeout)

    @defer.inlineCallbacks
    def stop(self, timeout: float = 10.0) -> Any:
        """SIGTERM haproxy (SIGKILL after ``timeout``) and wait for it to exit."""
        if self.pid is None or self._protocol.ended.called:
            return
        os.kill(self.pid, signal.SIGTERM)
        ended = self._protocol.ended
        try:
            yield poll_until(lambda: ended.called, timeout=timeout)
        except AssertionError:
            os.kill(self.pid, signal.SIGKILL)
            yield ended
