"""Run the real daemon for integration tests: ``twistd -n kgd`` on a free loopback port.

``Daemon`` spawns ``twistd -n kgd --listen tcp:0:interface=127.0.0.1``
with the given extra flags and environment, learns the port from the site's
"starting on" log line, records every kernel PID from the launcher's log
lines, and on ``stop()`` sends SIGTERM, waits for the exit (SIGKILL after a
deadline), then checks that no kernel process it started is still alive.
Tests wait on its Deferreds; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from typing import Any, Mapping, Sequence

import treq
from twisted.internet import defer, protocol, reactor, task
from twisted.python.failure import Failure

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESOURCES = os.path.join(REPO_ROOT, "tests", "resources")

# ``python -m twisted`` is ``twist``, not ``twistd``: run twistd's entry point.
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"

_LISTENING = re.compile(rb"starting on (\d+)")
_KERNEL_PID = re.compile(rb"launched as pid (\d+)|adopted, pid (\d+)")


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != b"Z"


@defer.inlineCallbacks
def poll_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Wait until ``predicate()`` (a value or a Deferred) is true, checking every ``interval``; fail after ``timeout``."""
    deadline = reactor.seconds() + timeout
    while True:
        value = yield defer.maybeDeferred(predicate)
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        yield task.deferLater(reactor, interval, lambda: None)


class _DaemonProtocol(protocol.ProcessProtocol):
    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self.ended: defer.Deferred[Failure] = defer.Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.daemon._output(data)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason)


class Daemon:
    """One kgd process for a test, with its log, port and kernel PIDs."""

    def __init__(
        self,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        listen: str | None = None,
        *,
        wrapper: Sequence[str] = (),
        inherit_fds: Mapping[int, int] | None = None,
        twistd_args: Sequence[str] = (),
    ) -> None:
        """``wrapper`` is a command line that execs the daemon's (as ``systemd-socket-activate``
        does); ``inherit_fds`` maps child fd numbers to open fds of the test (fd 3 = a listening socket);
        ``twistd_args`` go to twistd itself, before ``kgd`` (``-r asyncio``)."""
        self.args = list(args)
        self.twistd_args = list(twistd_args)
        self.wrapper = list(wrapper)
        self.inherit_fds = dict(inherit_fds or {})
        self.extra_env = dict(env or {})
        self.listen = listen or "tcp:0:interface=127.0.0.1"
        self.log = b""
        self.port: int | None = None
        self.kernel_pids: list[int] = []
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self._listening: defer.Deferred[int] = defer.Deferred()
        self._protocol: _DaemonProtocol | None = None
        self._buffer = b""

    @property
    def url(self) -> str:
        """The base URL of the daemon, without the base path."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def has_exited(self) -> bool:
        """True once the daemon process has ended."""
        return self._protocol is not None and self._protocol.ended.called

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _output(self, data: bytes) -> None:
        self.log += data
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            match = _LISTENING.search(line)
            if match and not self._listening.called:
                self.port = int(match.group(1))
                self._listening.callback(self.port)
            pid = _KERNEL_PID.search(line)
            if pid:
                self.kernel_pids.append(int(pid.group(1) or pid.group(2)))

    def start(self, timeout: float = 30.0) -> defer.Deferred[int]:
        """Spawn the daemon; fires with its port once it listens."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KG_", "KGD_"))}
        env.update(self.extra_env)
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        argv = [*self.wrapper, sys.executable, "-c", TWISTD, "-n", "--pidfile=", *self.twistd_args, "kgd", "--listen", self.listen, *self.args]
        self._protocol = _DaemonProtocol(self)
        child_fds = {0: "w", 1: "r", 2: "r", **self.inherit_fds}
        self.transport = reactor.spawnProcess(
            self._protocol, argv[0], argv, env=env, path=REPO_ROOT, childFDs=child_fds
        )
        self._protocol.ended.addBoth(self._ended)

        def timed_out(failure: Failure) -> Failure:
            failure.trap(defer.TimeoutError, defer.CancelledError)
            raise AssertionError(f"kgd did not start listening:\n{self.log.decode(errors='replace')}")

        self._listening.addTimeout(timeout, reactor).addErrback(timed_out)
        return self._listening

    def _ended(self, reason: Failure) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.exit_signal = getattr(reason.value, "signal", None)
        if not self._listening.called:
            self._listening.errback(
                AssertionError(f"kgd exited ({self.exit_code}) before listening:\n{self.log.decode(errors='replace')}")
            )

    def signal(self, signum: int) -> None:
        """Send a signal to the daemon."""
        if self.transport.pid is not None:
            os.kill(self.transport.pid, signum)

    @defer.inlineCallbacks
    def stop(self, timeout: float = 30.0, *, kernels_survive: bool = False) -> Any:
        """SIGTERM the daemon, wait for it (SIGKILL after ``timeout``), then check no kernel survived.

        ``kernels_survive``: the daemon detaches its kernels (``--on-stop detach``), so their
        survival is the test's to check.
        """
        assert self._protocol is not None
        ended = self._protocol.ended
        if not ended.called:
            self.signal(signal.SIGTERM)
            waiter: defer.Deferred[Any] = defer.Deferred()
            ended.addBoth(lambda r: (waiter.called or waiter.callback(None), r)[1])
            waiter.addTimeout(timeout, reactor)
            try:
                yield waiter
            except defer.TimeoutError:
                self.signal(signal.SIGKILL)
                yield poll_until(lambda: ended.called, timeout=10)
                self._kill_kernels()
                raise AssertionError(f"kgd did not stop within {timeout} s after SIGTERM")
        survivors = [pid for pid in self.kernel_pids if pid_alive(pid)]
        if survivors and not kernels_survive:
            self._kill_kernels()
            raise AssertionError(f"kernel processes outlived kgd: {survivors}")

    def kill_kernels(self) -> None:
        """SIGKILL the process group of every kernel this daemon launched or adopted (test cleanup)."""
        self._kill_kernels()

    def _kill_kernels(self) -> None:
        for pid in self.kernel_pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Client:
    """A small JSON HTTP client for one daemon, sending its token if it has one."""

    def __init__(self, daemon: Daemon, token: str = "", base: str = "/") -> None:
        self.daemon = daemon
        self.token = token
        self.base = base

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[bytes, list[bytes]]:
        headers = {}
        if self.token:
            headers[b"Authorization"] = [f"token {self.token}".encode()]
        for name, value in (extra or {}).items():
            headers[name.encode()] = [value.encode()]
        return headers

    def url(self, path: str) -> str:
        return self.daemon.url + self.base.rstrip("/") + "/" + path.lstrip("/")

    @defer.inlineCallbacks
    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        """Send a request; fires with (status, headers, parsed JSON or raw bytes)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = yield treq.request(method, self.url(path), data=data, headers=self._headers(headers), persistent=False)
        content = yield response.content()
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = content
        return response.code, response.headers, parsed


@defer.inlineCallbacks
def daemon_with_kernel(test: Any, args: list[str], **daemon_kwargs: Any) -> Any:
    """A started daemon (stopped at the test's end), a client of it, and the id of a new kernel."""
    daemon = Daemon(args, **daemon_kwargs)
    yield daemon.start()
    test.addCleanup(daemon.stop)
    client = Client(daemon)
    status, _, body = yield client.request("POST", "/api/kernels", {})
    test.assertEqual(status, 201, body)
    return daemon, client, body["id"]
