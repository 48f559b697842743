"""Tests for kgd.kernels.launcher: kernel command, environment, and LocalLauncher.

LocalLauncher runs against a fake process reactor (a MemoryReactor with a
Clock and a recording ``spawnProcess``, as Twisted's procmon tests do): the
tests see exactly what would be executed, with which environment, and
drive the process protocol by hand.  The fake PIDs are above the kernel's
PID limit, so the launcher's group signals can never reach a real process.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

from jupyter_client.kernelspec import KernelSpec
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kgd.interfaces import IKernelLauncher, IRunningKernel
from kgd.kernels.launcher import NEW_SESSION, TRAMPOLINE, LocalKernel, LocalLauncher, kernel_command, kernel_environment

# Above Linux's maximum pid_max (2**22): kill(-pid) finds no such group.
FAKE_PID = 2**22 + 4242


class FakeProcess:
    """The transport spawnProcess returns: records signals and stdin closing."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int | str] = []
        self.stdin_closed = False
        self.exited = False

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, signum: int | str) -> None:
        if self.exited:
            raise error.ProcessExitedAlready()
        self.signals.append(signum)


class FakeProcessReactor(MemoryReactorClock):
    """A memory reactor whose spawnProcess records its arguments instead of forking."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict] = []
        self.spawn_error: Exception | None = None

    def spawnProcess(self, processProtocol, executable, args=(), env=None, path=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.spawn_error is not None:
            raise self.spawn_error
        process = FakeProcess(FAKE_PID + len(self.spawned))
        self.spawned.append(
            {"protocol": processProtocol, "executable": executable, "args": list(args), "env": env, "path": path,
             "process": process}
        )
        processProtocol.makeConnection(process)
        return process


def make_spec(resource_dir: str, argv: list[str] | None = None, env: dict | None = None) -> KernelSpec:
    return KernelSpec(
        argv=argv or ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="Python 3",
        language="python",
        env=env or {},
        resource_dir=resource_dir,
    )


class KernelCommandTests(SynchronousTestCase):
    def test_placeholders(self) -> None:
        """{connection_file}, {resource_dir} and {prefix} are filled in; other braces are left alone."""
        command = kernel_command(
            ["kernel", "-f", "{connection_file}", "--res={resource_dir}", "{prefix}/bin", "{other}", "{}"],
            "/run/k.json",
            "/specs/k",
        )
        self.assertEqual(command, ["kernel", "-f", "/run/k.json", "--res=/specs/k", f"{sys.prefix}/bin", "{other}", "{}"])

    def test_python_means_this_python(self) -> None:
        """A kernelspec whose command is python, python3 or pythonX.Y runs with kgd's own interpreter."""
        version = "python{}.{}".format(*sys.version_info[:2])
        for name in ("python", "python3", version):
            self.assertEqual(kernel_command([name, "-m", "x"], "c", "r"), [sys.executable, "-m", "x"])

    def test_other_commands_untouched(self) -> None:
        """Any other executable (and python elsewhere than first) is kept as written."""
        self.assertEqual(kernel_command(["/usr/bin/python3", "python"], "c", "r"), ["/usr/bin/python3", "python"])
        self.assertEqual(kernel_command([], "c", "r"), [])


class KernelEnvironmentTests(SynchronousTestCase):
    def test_spec_env_added_with_substitution(self) -> None:
        """Spec env values are added over the base, with ${VAR} taken from the base environment."""
        env = kernel_environment(
            {"PATH": "/bin", "HOME": "/home/u"},
            {"PATH": "/opt/bin:${PATH}", "DATA": "${HOME}/data", "N": 3},
        )
        self.assertEqual(env, {"PATH": "/opt/bin:/bin", "HOME": "/home/u", "DATA": "/home/u/data", "N": "3"})

    def test_unknown_variables_left_as_written(self) -> None:
        """An unknown ${VAR} or a lone $ stays as written instead of failing the launch."""
        env = kernel_environment({}, {"A": "${NOPE}/x", "B": "cost $5"})
        self.assertEqual(env, {"A": "${NOPE}/x", "B": "cost $5"})

    def test_base_not_modified(self) -> None:
        """The caller's base mapping is not changed."""
        base = {"PATH": "/bin"}
        kernel_environment(base, {"PATH": "/x"})
        self.assertEqual(base, {"PATH": "/bin"})


class LocalLauncherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.runtime = self.mktemp()
        os.makedirs(self.runtime, mode=0o700)
        self.resource_dir = self.mktemp()
        os.makedirs(self.resource_dir)
        self.launcher = LocalLauncher(self.reactor, self.runtime)

    def launch(self, kernel_id: str = "kid-1", connection_info: dict | None = None, **spec_kwargs) -> LocalKernel:
        spec = make_spec(self.resource_dir, **spec_kwargs)
        d = self.launcher.launch(kernel_id, "python3", spec, {"PATH": "/bin", "X": "1"}, "/work/dir", connection_info)
        kernel = self.successResultOf(d)
        self.addCleanup(kernel.cleanup)
        return kernel

    def test_provides_interfaces(self) -> None:
        """LocalLauncher and its kernels provide IKernelLauncher and IRunningKernel."""
        self.assertTrue(verifyObject(IKernelLauncher, self.launcher))
        self.assertTrue(verifyObject(IRunningKernel, self.launch()))

    def test_spawns_through_setsid_trampoline(self) -> None:
        """The kernel command runs through a site-less python -c trampoline that calls setsid() then execs the kernel."""
        kernel = self.launch()
        (spawned,) = self.reactor.spawned
        self.assertEqual(spawned["executable"], sys.executable)
        self.assertEqual(spawned["args"][:5], [sys.executable, "-I", "-S", "-c", NEW_SESSION])
        self.assertIn("os.setsid()", NEW_SESSION)
        self.assertEqual(
            spawned["args"][5:], [sys.executable, "-m", "ipykernel_launcher", "-f", kernel.connection_file]
        )
        self.assertEqual(spawned["path"], "/work/dir")
        self.assertTrue(spawned["process"].stdin_closed)
        self.assertEqual(kernel.pid, spawned["process"].pid)

    def test_trampoline_runs_the_command_in_a_new_session(self) -> None:
        """The trampoline really execs its arguments as the leader of a new session, with the environment untouched."""
        code = "import os,sys; print(os.getsid(0) == os.getpid(), os.environ.get('KGD_PROBE'), sys.flags.no_site)"
        out = subprocess.run(
            [sys.executable, *TRAMPOLINE, sys.executable, "-c", code],
            capture_output=True, text=True, timeout=60, check=True, env={**os.environ, "KGD_PROBE": "kept"},
        )
        self.assertEqual(out.stdout.split(), ["True", "kept", "0"])

    def test_environment(self) -> None:
        """The kernel gets the given environment, the spec's env and JPY_PARENT_PID of the daemon."""
        self.launch(env={"SPEC_VAR": "${X}-spec"})
        env = self.reactor.spawned[0]["env"]
        self.assertEqual(env, {"PATH": "/bin", "X": "1", "SPEC_VAR": "1-spec", "JPY_PARENT_PID": str(os.getpid())})

    def test_connection_file(self) -> None:
        """The connection file is private (0600), in the runtime directory, with a fresh key, loopback ip and five ports."""
        first = self.launch("kid-1")
        second = self.launch("kid-2")
        self.assertEqual(os.path.dirname(first.connection_file), self.runtime)
        self.assertEqual(stat.S_IMODE(os.stat(first.connection_file).st_mode), 0o600)
        with open(first.connection_file) as f:
            written = json.load(f)
        self.assertEqual(written["ip"], "127.0.0.1")
        self.assertEqual(written["transport"], "tcp")
        self.assertEqual(written["signature_scheme"], "hmac-sha256")
        self.assertEqual(len(written["key"]), 64)
        ports = [written[f"{c}_port"] for c in ("shell", "iopub", "stdin", "control", "hb")]
        self.assertEqual(len(set(ports)), 5)
        self.assertTrue(all(p > 0 for p in ports))
        self.assertEqual(first.connection_info["key"], written["key"])
        self.assertNotEqual(first.connection_info["key"], second.connection_info["key"])

    def test_relaunch_reuses_ports_and_key(self) -> None:
        """A relaunch with an earlier connection_info writes the same ports and key again."""
        first = self.launch()
        info = dict(first.connection_info)
        first.cleanup()
        again = self.launch(connection_info=info)
        with open(again.connection_file) as f:
            written = json.load(f)
        for channel in ("shell", "iopub", "stdin", "control", "hb"):
            self.assertEqual(written[f"{channel}_port"], info[f"{channel}_port"])
        self.assertEqual(written["key"], info["key"])
        self.assertEqual(stat.S_IMODE(os.stat(again.connection_file).st_mode), 0o600)

    def test_output_logged_by_line_with_kernel_id(self) -> None:
        """Kernel stdout/stderr are logged one event per line, tagged with the kernel id; a partial line waits."""
        self.launch("kid-7")
        protocol = self.reactor.spawned[0]["protocol"]
        with capturedLogs() as events:
            protocol.childDataReceived(1, b"hello\nwor")
            protocol.childDataReceived(2, b"oops\r\n")
            protocol.childDataReceived(1, b"ld\n")
        output = [(e["kernel_id"], e["stream"], e["line"]) for e in events if e.get("event") == "kernel_output"]
        self.assertEqual(
            output, [("kid-7", "stdout", "hello"), ("kid-7", "stderr", "oops"), ("kid-7", "stdout", "world")]
        )

    def test_partial_line_logged_at_exit(self) -> None:
        """Output without a final newline is still logged when the process ends."""
        self.launch("kid-7")
        protocol = self.reactor.spawned[0]["protocol"]
        with capturedLogs() as events:
            protocol.childDataReceived(2, b"Traceback: boom")
            protocol.processEnded(Failure(error.ProcessTerminated(exitCode=1)))
        lines = [e["line"] for e in events if e.get("event") == "kernel_output"]
        self.assertEqual(lines, ["Traceback: boom"])

    def test_undecodable_output(self) -> None:
        """Output that is not UTF-8 is logged with replacement characters, not dropped."""
        self.launch()
        protocol = self.reactor.spawned[0]["protocol"]
        with capturedLogs() as events:
            protocol.childDataReceived(1, b"\xff\xfe ok\n")
        self.assertEqual([e["line"] for e in events if e.get("event") == "kernel_output"], ["\ufffd\ufffd ok"])

    def test_process_ended_fires_when_ended(self) -> None:
        """whenEnded fires with the exit code when the process ends, and at once afterwards."""
        kernel = self.launch()
        waiting = kernel.whenEnded()
        self.assertNoResult(waiting)
        self.reactor.spawned[0]["protocol"].processEnded(Failure(error.ProcessTerminated(exitCode=3)))
        self.assertEqual(self.successResultOf(waiting), 3)
        self.assertEqual(self.successResultOf(kernel.whenEnded()), 3)

    def test_killed_process_has_no_exit_code(self) -> None:
        """A kernel ended by a signal reports None as its exit code; a clean exit reports 0."""
        kernel = self.launch()
        waiting = kernel.whenEnded()
        self.reactor.spawned[0]["protocol"].processEnded(Failure(error.ProcessTerminated(exitCode=None, signal=9)))
        self.assertIsNone(self.successResultOf(waiting))
        clean = self.launch("kid-2")
        self.reactor.spawned[1]["protocol"].processEnded(Failure(error.ProcessDone(0)))
        self.assertEqual(self.successResultOf(clean.whenEnded()), 0)

    def test_timed_out_waiter_is_skipped(self) -> None:
        """A whenEnded Deferred cancelled by a timeout does not break the others when the process ends."""
        kernel = self.launch()
        cancelled = kernel.whenEnded()
        cancelled.cancel()
        self.failureResultOf(cancelled)
        other = kernel.whenEnded()
        self.reactor.spawned[0]["protocol"].processEnded(Failure(error.ProcessDone(0)))
        self.assertEqual(self.successResultOf(other), 0)

    def test_signals_fall_back_to_process(self) -> None:
        """Without a process group (setsid not yet run) a signal goes to the process itself; none after it ended."""
        kernel = self.launch()
        process = self.reactor.spawned[0]["process"]
        kernel.signal(signal.SIGINT)
        kernel.terminate()
        kernel.kill()
        self.assertEqual(process.signals, [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
        self.reactor.spawned[0]["protocol"].processEnded(Failure(error.ProcessDone(0)))
        kernel.kill()
        self.assertEqual(len(process.signals), 3)

    def test_signal_to_exited_process_ignored(self) -> None:
        """Signalling a process that exited before its end was reported does not raise."""
        kernel = self.launch()
        self.reactor.spawned[0]["process"].exited = True
        kernel.signal(signal.SIGINT)

    def test_cleanup_removes_connection_file(self) -> None:
        """cleanup() removes the connection file, and may be called again."""
        kernel = self.launch()
        self.assertTrue(os.path.exists(kernel.connection_file))
        kernel.cleanup()
        self.assertFalse(os.path.exists(kernel.connection_file))
        kernel.cleanup()

    def test_spawn_failure(self) -> None:
        """If the process cannot be spawned, launch fails and no connection file is left."""
        self.reactor.spawn_error = OSError("cannot fork")
        d = self.launcher.launch("kid-1", "python3", make_spec(self.resource_dir), {}, "/", None)
        self.failureResultOf(d, OSError)
        self.assertEqual(os.listdir(self.runtime), [])


class KillpgTests(SynchronousTestCase):
    """LocalKernel signals its whole process group through the injected killpg."""

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.runtime = self.mktemp()
        os.makedirs(self.runtime, mode=0o700)
        self.calls: list[tuple[int, int]] = []
        self.launcher = LocalLauncher(self.reactor, self.runtime, killpg=lambda pgid, signum: self.calls.append((pgid, signum)))
        d = self.launcher.launch("kid-1", "python3", make_spec(self.mktemp()), {}, "/", None)
        self.kernel = self.successResultOf(d)
        self.addCleanup(self.kernel.cleanup)

    def test_signals_go_to_the_group(self) -> None:
        """interrupt, TERM and KILL go to the kernel's group, not only to its process."""
        self.kernel.signal(signal.SIGINT)
        self.kernel.terminate()
        self.kernel.kill()
        self.assertEqual(self.calls, [(FAKE_PID, signal.SIGINT), (FAKE_PID, signal.SIGTERM), (FAKE_PID, signal.SIGKILL)])
        self.assertEqual(self.reactor.spawned[0]["process"].signals, [])

    def test_group_killed_when_the_kernel_ends(self) -> None:
        """When the kernel ends, what it left running in its group is killed; later signals are not sent."""
        self.reactor.spawned[0]["protocol"].processEnded(Failure(error.ProcessDone(0)))
        self.kernel.terminate()
        self.assertEqual(self.calls, [(FAKE_PID, signal.SIGKILL)])
