"""Local kernels: a kernel process spawned by the reactor in its own process group.

``LocalLauncher`` writes a connection file (mode 0600, fresh random HMAC key,
free loopback ports chosen by jupyter_client) into the daemon's private
runtime directory, then spawns the kernelspec's command through a tiny
trampoline that calls ``setsid()`` before ``exec``: the kernel leads its own
process group, so an interrupt or a kill reaches every process the kernel
started, and a Ctrl-C at the daemon's terminal does not reach the kernel.
The kernel's stdout and stderr go to the log, one line per event, tagged
with the kernel id.

Kernels meant to outlive the daemon (``--kernel-store``) are launched
*detached*: without ``JPY_PARENT_PID`` (ipykernel would exit with its
parent) and with their output appended to a log file of their own instead
of pipes that close when the daemon goes.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import sys
from string import Template
from typing import Any, Callable, Mapping, Sequence

from jupyter_client.connect import write_connection_file
from jupyter_client.kernelspec import KernelSpec
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorProcess
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgd.interfaces import IKernelLauncher, IRunningKernel
from kgd.kernels.process_end import ProcessEnd
from kgd.kernels.process_identity import process_start_time, this_host
from kgd.kernels.records import LocalProcess

log = Logger()

# Runs as ``python -I -S -c NEW_SESSION argv...``: become a session (and
# group) leader, then replace this process with the kernel, keeping the PID.
# -I -S skip the site module and the environment: the trampoline needs only
# os and sys, and starts in ~15 ms instead of ~60 ms with site-packages.
NEW_SESSION = "import os,sys;os.setsid();os.execvp(sys.argv[1],sys.argv[1:])"
TRAMPOLINE = ("-I", "-S", "-c", NEW_SESSION)

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")
_PYTHON_NAMES = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}


def connection_file_path(runtime_dir: str, kernel_id: str) -> str:
    """Where a kernel's connection file is: one name for launching, restarting and adopting it."""
    return os.path.join(runtime_dir, f"kernel-{kernel_id}.json")


def kernel_command(argv: Sequence[str], connection_file: str, resource_dir: str) -> list[str]:
    """The kernelspec's argv with its placeholders filled in, as jupyter_client does.

    ``{connection_file}``, ``{resource_dir}`` and ``{prefix}`` are replaced;
    other braces are left alone.  A bare ``python`` command means the Python
    kgd runs on, so a kernelspec installed into this environment works.
    """
    values = {"connection_file": connection_file, "resource_dir": resource_dir, "prefix": sys.prefix}
    command = [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), arg) for arg in argv]
    if command and command[0] in _PYTHON_NAMES:
        command[0] = sys.executable
    return command


def kernel_environment(base: Mapping[str, str], spec_env: Mapping[str, str]) -> dict[str, str]:
    """The kernel's environment: ``base`` plus the kernelspec's ``env``.

    Spec values may refer to ``${VAR}`` of the base environment, as
    jupyter_client allows; anything unknown is left as written.
    """
    env = dict(base)
    for name, value in spec_env.items():
        env[name] = Template(str(value)).safe_substitute(base)
    return env


class _KernelProcessProtocol(protocol.ProcessProtocol):
    """Logs a kernel's output by line and reports when its process ends."""

    def __init__(self, kernel_id: str) -> None:
        self.kernel_id = kernel_id
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            self._log_line(childFD, line)

    def _log_line(self, childFD: int, line: bytes) -> None:
        stream = "stdout" if childFD == 1 else "stderr"
        log.info(
            "kernel {kernel_id} {stream}: {line}",
            kernel_id=self.kernel_id,
            stream=stream,
            line=line.decode("utf-8", "replace").rstrip("\r"),
            event="kernel_output",
        )

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._log_line(fd, rest)
        value = reason.value
        code = getattr(value, "exitCode", None)
        self.ended.callback(code)


Killpg = Callable[[int, int], None]


@implementer(IRunningKernel)
class LocalKernel:
    """A kernel process on this machine, leader of its own process group.

    Signals go to the group through ``killpg`` (``os.killpg`` unless a test
    records them instead).
    """

    def __init__(
        self,
        transport: Any,
        process_protocol: _KernelProcessProtocol,
        connection_info: dict[str, Any],
        connection_file: str,
        killpg: Killpg = os.killpg,
    ) -> None:
        self._transport = transport
        self.connection_info = connection_info
        self.connection_file = connection_file
        self.pid: int | None = transport.pid
        start_time = process_start_time(transport.pid) if transport.pid is not None else None
        #: Who the process is, for a kernel record; None if it is gone already.
        self.process = LocalProcess(transport.pid, transport.pid, start_time, this_host()) if start_time else None
        self._killpg = killpg
        self._end = ProcessEnd()
        process_protocol.ended.addCallback(self._on_end)

    def _on_end(self, code: int | None) -> None:
        # Processes the kernel started may outlive it in its group: end them too.
        if self.pid is not None:
            self._signal_group(signal.SIGKILL)
        self._end.end(code)

    def whenEnded(self) -> defer.Deferred[int | None]:
        return self._end.whenEnded()

    def _signal_group(self, signum: int) -> bool:
        """Signal the process group; False if it does not exist (yet, or any more)."""
        assert self.pid is not None
        try:
            self._killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def signal(self, signum: int) -> None:
        if self._end.ended or self.pid is None:
            return
        if not self._signal_group(signum):
            # The trampoline may not have called setsid() yet: signal the process.
            try:
                self._transport.signalProcess(signum)
            except error.ProcessExitedAlready:
                pass

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def shutdown_requested(self, restart: bool) -> None:
        """Nothing more to do for a local process: it ends by itself."""

    def cleanup(self) -> None:
        try:
            os.unlink(self.connection_file)
        except FileNotFoundError:
            pass


@implementer(IKernelLauncher)
class LocalLauncher:
    """Launches kernels as child processes of the daemon.

    With ``detached_log_dir`` set, kernels are launched to outlive the
    daemon, their output going to ``<detached_log_dir>/<kernel id>.log``.
    """

    def __init__(
        self,
        reactor: IReactorProcess,
        runtime_dir: str,
        ip: str = "127.0.0.1",
        killpg: Killpg = os.killpg,
        detached_log_dir: str | None = None,
    ) -> None:
        self._reactor = reactor
        self._runtime_dir = runtime_dir
        self._ip = ip
        self._killpg = killpg
        self._detached_log_dir = detached_log_dir

    def stop(self) -> None:
        """Nothing to wait for: a local launch completes at once."""

    def launch(
        self,
        kernel_id: str,
        spec_name: str,
        spec: KernelSpec,
        env: Mapping[str, str],
        cwd: str,
        connection_info: dict[str, Any] | None = None,
    ) -> defer.Deferred[IRunningKernel]:
        path = connection_file_path(self._runtime_dir, kernel_id)
        if connection_info is None:
            _, info = write_connection_file(
                path,
                ip=self._ip,
                key=secrets.token_hex(32).encode("ascii"),
                transport="tcp",
                signature_scheme="hmac-sha256",
                kernel_name=spec_name,
            )
            connection_info = dict(info)
        else:
            reuse = {k: v for k, v in connection_info.items() if k != "kernel_name"}
            if isinstance(reuse.get("key"), str):
                reuse["key"] = reuse["key"].encode("ascii")
            write_connection_file(path, kernel_name=spec_name, **reuse)
        argv = kernel_command(spec.argv, path, spec.resource_dir)
        full_env = kernel_environment(env, spec.env or {})
        process_protocol = _KernelProcessProtocol(kernel_id)
        try:
            child_fds = self._child_fds(kernel_id, full_env)
            try:
                transport = self._reactor.spawnProcess(
                    process_protocol,
                    sys.executable,
                    [sys.executable, *TRAMPOLINE, *argv],
                    env=full_env,
                    path=cwd,
                    childFDs=child_fds,
                )
            finally:
                for fd in set(child_fds.values()) if child_fds else ():
                    if isinstance(fd, int):
                        os.close(fd)
        except OSError as failure:
            os.unlink(path)
            return defer.fail(failure)
        transport.closeStdin()
        log.info(
            "kernel {kernel_id} ({spec_name}) launched as pid {pid}",
            kernel_id=kernel_id,
            spec_name=spec_name,
            pid=transport.pid,
            event="kernel_launched",
        )
        return defer.succeed(LocalKernel(transport, process_protocol, connection_info, path, self._killpg))

    def _child_fds(self, kernel_id: str, env: dict[str, str]) -> dict[int, Any] | None:
        """Where the kernel's stdio goes: pipes to the log, or for a detached kernel its own log file.

        Sets ``JPY_PARENT_PID`` for a kernel that is not detached, so that it
        ends with the daemon even if the daemon is killed outright.
        """
        if self._detached_log_dir is None:
            env["JPY_PARENT_PID"] = str(os.getpid())
            return None
        log_file = os.path.join(self._detached_log_dir, f"{kernel_id}.log")
        output = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            nothing = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(output)
            raise
        return {0: nothing, 1: output, 2: output}
