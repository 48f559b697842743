"""A private ``redis-server`` on loopback for tests of the Redis kernel store.

``RedisServer(root)`` picks a free port on 127.0.0.1 and runs Debian's
``redis-server`` in the foreground with its working directory under ``root``
and no persistence (``--save ""``, ``--appendonly no``), optionally with
``--requirepass``.  ``start()`` fires once the server answers ``PING``
(polled with a deadline); ``stop()`` ends it by PID and waits for the exit;
``start()`` again brings a fresh, empty server back on the same port, which
is how the outage tests take Redis away and give it back.
"""

from __future__ import annotations

import os
import shutil
import signal
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.integration.daemon import poll_until
from tests.integration.sshd import free_port

REDIS_SERVER = "/usr/bin/redis-server"
HOST = "127.0.0.1"
INSTALL_HINT = "apt-get update && apt-get install -y redis-server; pip install txredisapi (or pip install -e '.[test]')"


def missing() -> str | None:
    """Why the Redis tests cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return f"redis-server is not installed; install with: {INSTALL_HINT}"
    return None


class _PingProtocol(protocol.Protocol):
    """Sends ``AUTH`` (if needed) and ``PING``; ``answered`` fires True on ``+PONG``, False on an error reply."""

    def __init__(self, password: str | None) -> None:
        self.password = password
        self.answered: defer.Deferred[bool] = defer.Deferred()
        self._received = b""

    def connectionMade(self) -> None:
        command = b"PING\r\n"
        if self.password is not None:
            command = b"AUTH " + self.password.encode() + b"\r\n" + command
        self.transport.write(command)

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        *lines, self._received = self._received.split(b"\r\n")
        for line in lines:
            if line.startswith((b"+PONG", b"-")) and not self.answered.called:
                self.answered.callback(line == b"+PONG")
                self.transport.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        if not self.answered.called:
            self.answered.callback(False)


def ping(port: int, password: str | None = None) -> defer.Deferred[bool]:
    """True if a Redis server on ``127.0.0.1:port`` answers PING; False if it refuses or is not there."""
    ping_protocol = _PingProtocol(password)
    d = connectProtocol(TCP4ClientEndpoint(reactor, HOST, port, timeout=2), ping_protocol)
    d.addCallback(lambda _: ping_protocol.answered)
    return d.addErrback(lambda _: False)


class _RedisProtocol(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port>, started and stopped by the test."""

    def __init__(self, root: str, password: str | None = None, persistent: bool = False) -> None:
        """``persistent``: an append-only file fsynced on every write, so a restart keeps the data (as production Redis)."""
        self.root = root
        self.password = password
        self.persistent = persistent
        self.port = free_port(HOST)
        self.pid: int | None = None
        self.log = b""
        self._protocol: _RedisProtocol | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server (database 0), with the password if there is one."""
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    @defer.inlineCallbacks
    def start(self, timeout: float = 15.0) -> Any:
        """Run ``redis-server`` in the foreground; fires once it answers PING."""
        workdir = os.path.join(self.root, "redis")
        os.makedirs(workdir, exist_ok=True)
        args = [
            REDIS_SERVER, "--bind", HOST, "--port", str(self.port), "--dir", workdir,
            "--save", "", "--daemonize", "no", "--logfile", "",
            *(["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self._protocol = _RedisProtocol()
        transport = reactor.spawnProcess(self._protocol, REDIS_SERVER, args, env={})
        self.pid = transport.pid
        ended = self._protocol.ended

        def answered_or_ended() -> Any:
            if ended.called:
                raise AssertionError(f"redis-server exited before answering:\n{self._protocol.output.decode(errors='replace')}")
            return ping(self.port, self.password)

        yield poll_until(answered_or_ended, timeout=timeout)

    @defer.inlineCallbacks
    def stop(self, timeout: float = 10.0) -> Any:
        """SIGTERM redis-server (SIGKILL after ``timeout``) and wait for it to exit."""
        if self._protocol is None or self._protocol.ended.called or self.pid is None:
            return
        os.kill(self.pid, signal.SIGTERM)
        ended = self._protocol.ended
        try:
            yield poll_until(lambda: ended.called, timeout=timeout)
        except AssertionError:
            os.kill(self.pid, signal.SIGKILL)
            yield ended
        self.log += self._protocol.output
