"""The provisioner-backed launcher: launch sequence, end by polling, signals, cleanup, failures.

A scripted provisioner stands in for a remote one (its coroutines await no
asyncio future, so ``defer.ensureDeferred`` can drive them under trial's
reactor); jupyter_client's real ``LocalProvisioner`` checks what
``ProvisionerParent`` offers a real provisioner.  Time is a ``Clock``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.provisioning import LocalProvisioner
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from kgd.interfaces import IKernelLauncher, IRunningKernel
from kgd.kernels.provisioned import (
    ProvisionedLauncher,
    ProvisionerError,
    ProvisionerParent,
    nonblocking_provisioner_sockets,
    persistable_state,
)
from kgd.kernels.provisioner_env import UnsafeProvisionerEnv
from kgd.kernels.records import CannotAdopt, KernelRecord, ProvisionerState

INFO = {
    "transport": "tcp",
    "ip": "10.0.0.7",
    "shell_port": 1,
    "iopub_port": 2,
    "stdin_port": 3,
    "hb_port": 4,
    "control_port": 5,
    "key": b"remote-key",
    "signature_scheme": "hmac-sha256",
}


def remote_spec(provisioner: str = "scripted-provisioner") -> KernelSpec:
    """A kernelspec naming a provisioner, as gateway-provisioners' spec tools write them."""
    return KernelSpec(
        argv=["python", "launch.py", "--kernel-id", "{kernel_id}"],
        display_name="Remote",
        language="python",
        metadata={"kernel_provisioner": {"provisioner_name": provisioner, "config": {}}},
    )


class ScriptedProvisioner:
    """Records every call; ``exit_code`` is what ``poll`` reports (None while running)."""

    def __init__(
        self, kernel_id: str, kernel_spec: KernelSpec, parent: Any, fail_launch: bool = False, gate: defer.Deferred[None] | None = None
    ) -> None:
        self.kernel_id = kernel_id
        self.kernel_spec = kernel_spec
        self.parent = parent
        self.calls: list[tuple[Any, ...]] = []
        self.exit_code: int | None = None
        self.fail_launch = fail_launch
        self.gate = gate
        self.has_process = False

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("pre_launch", kwargs))
        return dict(kwargs, cmd=list(self.kernel_spec.argv))

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("launch_kernel", cmd, kwargs))
        self.has_process = True
        if self.gate is not None:
            await self.gate  # a remote launch takes a while
        if self.fail_launch:
            raise RuntimeError("the cluster said no")
        return dict(INFO)

    async def post_launch(self, **kwargs: Any) -> None:
        self.calls.append(("post_launch",))

    async def poll(self) -> int | None:
        self.calls.append(("poll",))
        return self.exit_code

    async def send_signal(self, signum: int) -> None:
        self.calls.append(("send_signal", signum))

    async def terminate(self, restart: bool = False) -> None:
        self.calls.append(("terminate", restart))

    async def shutdown_requested(self, restart: bool = False) -> None:
        self.calls.append(("shutdown_requested", restart))

    async def kill(self, restart: bool = False) -> None:
        self.calls.append(("kill", restart))

    async def cleanup(self, restart: bool = False) -> None:
        self.calls.append(("cleanup", restart))

    async def get_provisioner_info(self) -> dict[str, Any]:
        """As gateway-provisioners' remote provisioners: the base info (with the connection info) plus where the kernel runs."""
        return {"kernel_id": self.kernel_id, "connection_info": dict(INFO), "assigned_host": "node-7", "pid": 4321}

    async def load_provisioner_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("load_provisioner_info", info))


class ScriptedFactory:
    """A KernelProvisionerFactory stand-in that makes ScriptedProvisioners (or refuses, as for a missing one)."""

    def __init__(self, fail_launch: bool = False, refuse: Exception | None = None) -> None:
        self.made: list[ScriptedProvisioner] = []
        self.fail_launch = fail_launch
        self.refuse = refuse
        self.gate: defer.Deferred[None] | None = None
        #: What the next provisioners' poll() reports (an adopted kernel that ended meanwhile: a code).
        self.exit_code: int | None = None

    def create_provisioner_instance(self, kernel_id: str, spec: KernelSpec, parent: Any) -> ScriptedProvisioner:
        if self.refuse is not None:
            raise self.refuse
        provisioner = ScriptedProvisioner(kernel_id, spec, parent, self.fail_launch, self.gate)
        provisioner.exit_code = self.exit_code
        self.made.append(provisioner)
        return provisioner


class ProvisionedLauncherTests(unittest.TestCase):
    """Launching through a provisioner and living with the result."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.runtime = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.runtime, True)

    def launcher(self, factory: ScriptedFactory, **kwargs: Any) -> ProvisionedLauncher:
        kwargs.setdefault("require_asyncio", False)
        kwargs.setdefault("environ", {})
        return ProvisionedLauncher(
            self.clock, self.runtime, factory=lambda: factory, run=defer.ensureDeferred, poll_interval=2.0, **kwargs
        )

    def launch(self, factory: ScriptedFactory, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
        launcher = self.launcher(factory, **kwargs)
        return launcher.launch("k-1", "remote", remote_spec(), env or {"KERNEL_USERNAME": "ada"}, "/srv")

    def test_launch_sequence(self) -> None:
        """pre_launch gets the env and cwd as data, launch_kernel its command, then post_launch; the kernel's info is the provisioner's."""
        factory = ScriptedFactory()
        self.assertTrue(verifyObject(IKernelLauncher, self.launcher(factory)))
        running = self.successResultOf(self.launch(factory, {"KERNEL_USERNAME": "ada lovelace", "PATH": "/bin"}))
        self.assertTrue(verifyObject(IRunningKernel, running))
        provisioner = factory.made[0]
        self.assertEqual(
            provisioner.calls[:3],
            [
                ("pre_launch", {"env": {"KERNEL_USERNAME": "ada lovelace", "PATH": "/bin"}, "cwd": "/srv"}),
                ("launch_kernel", ["python", "launch.py", "--kernel-id", "{kernel_id}"], {"env": {"KERNEL_USERNAME": "ada lovelace", "PATH": "/bin"}, "cwd": "/srv"}),
                ("post_launch",),
            ],
        )
        self.assertEqual(running.connection_info, INFO)
        self.assertIsNone(running.pid, "a remote kernel has no local pid")
        self.assertIsInstance(provisioner.parent, ProvisionerParent)
        self.assertEqual(provisioner.parent.kernel_id, "k-1")

    def test_ends_when_poll_reports_an_exit(self) -> None:
        """whenEnded fires once poll() returns a code, checked every poll interval; polling then stops."""
        factory = ScriptedFactory()
        running = self.successResultOf(self.launch(factory))
        provisioner = factory.made[0]
        ended = running.whenEnded()
        self.clock.advance(2.0)
        self.clock.advance(2.0)
        self.assertNoResult(ended)
        self.assertEqual(provisioner.calls.count(("poll",)), 2)
        provisioner.exit_code = 3
        self.clock.advance(2.0)
        self.assertEqual(self.successResultOf(ended), 3)
        self.assertEqual(self.successResultOf(running.whenEnded()), 3)
        self.clock.advance(10.0)
        self.assertEqual(provisioner.calls.count(("poll",)), 3)

    def test_death_by_signal(self) -> None:
        """A negative (by-signal) code from poll() ends the kernel with None, as IRunningKernel says."""
        factory = ScriptedFactory()
        running = self.successResultOf(self.launch(factory))
        factory.made[0].exit_code = -9
        self.clock.advance(2.0)
        self.assertIsNone(self.successResultOf(running.whenEnded()))

    def test_signals_and_cleanup(self) -> None:
        """signal, shutdown_requested, terminate, kill and cleanup reach the provisioner's methods; nothing is signalled after the end."""
        factory = ScriptedFactory()
        running = self.successResultOf(self.launch(factory))
        provisioner = factory.made[0]
        running.signal(signal.SIGINT)
        running.shutdown_requested(True)
        running.terminate()
        running.kill()
        self.assertEqual(
            provisioner.calls[-4:],
            [("send_signal", signal.SIGINT), ("shutdown_requested", True), ("terminate", False), ("kill", False)],
        )
        provisioner.exit_code = 0
        self.clock.advance(2.0)
        running.signal(signal.SIGINT)
        running.kill()
        self.assertEqual(provisioner.calls[-1], ("poll",))
        self.successResultOf(running.cleanup())
        self.assertEqual(provisioner.calls[-1], ("cleanup", False))

    def test_failed_launch_leaves_nothing(self) -> None:
        """A launch that fails kills what started, releases the provisioner's resources and fails with the provisioner's reason."""
        factory = ScriptedFactory(fail_launch=True)
        failure = self.failureResultOf(self.launch(factory), ProvisionerError)
        self.assertIn("scripted-provisioner", str(failure.value))
        self.assertIn("the cluster said no", str(failure.value))
        self.assertEqual(factory.made[0].calls[-2:], [("kill", False), ("cleanup", False)])
        self.assertEqual(os.listdir(self.runtime), [])

    def test_stop_waits_for_launches_under_way(self) -> None:
        """Stopping during a launch waits for it, then kills and cleans up what it started; later launches are refused."""
        factory = ScriptedFactory()
        factory.gate = defer.Deferred()
        launcher = self.launcher(factory)
        launching = launcher.launch("k-1", "remote", remote_spec(), {}, "/srv")
        stopped = launcher.stop()
        self.assertNoResult(stopped)
        self.assertNoResult(launching)
        factory.gate.callback(None)
        failure = self.failureResultOf(launching, ProvisionerError)
        self.assertIn("the gateway is stopping", str(failure.value))
        self.assertEqual(factory.made[0].calls[-2:], [("kill", False), ("cleanup", False)])
        self.assertIsNone(self.successResultOf(stopped))
        self.failureResultOf(launcher.launch("k-2", "remote", remote_spec(), {}, "/srv"), ProvisionerError)
        self.assertEqual(len(factory.made), 1)

    def test_unavailable_provisioner(self) -> None:
        """A provisioner the factory cannot make (not registered, fails to import) is a clear ProvisionerError."""
        factory = ScriptedFactory(refuse=ModuleNotFoundError("Kernel provisioner 'scripted-provisioner' has not been registered."))
        failure = self.failureResultOf(self.launch(factory), ProvisionerError)
        self.assertIn("provisioner scripted-provisioner is not available", str(failure.value))

    def test_needs_asyncio_reactor(self) -> None:
        """On another reactor nothing is created and the error says to run twistd -r asyncio."""
        factory = ScriptedFactory()
        failure = self.failureResultOf(self.launch(factory, require_asyncio=True), ProvisionerError)
        self.assertIn("twistd -r asyncio kgd", str(failure.value))
        self.assertEqual(factory.made, [])

    def test_unsafe_env_never_reaches_the_provisioner(self) -> None:
        """A KERNEL_* value with shell syntax is refused (a 400) before any provisioner exists."""
        factory = ScriptedFactory()
        failure = self.failureResultOf(self.launch(factory, {"KERNEL_USERNAME": 'x"; touch /tmp/pwned; "'}), UnsafeProvisionerEnv)
        self.assertIn("KERNEL_USERNAME", str(failure.value))
        self.assertEqual(factory.made, [])


class PersistenceTests(unittest.TestCase):
    """What a provisioned kernel leaves for a later daemon, and how that daemon takes it back."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.runtime = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.runtime, True)
        self.factory = ScriptedFactory()

    def launcher(self) -> ProvisionedLauncher:
        return ProvisionedLauncher(
            self.clock, self.runtime, factory=lambda: self.factory, run=defer.ensureDeferred, poll_interval=2.0,
            require_asyncio=False, environ={},
        )

    def record(self, state: ProvisionerState | None) -> KernelRecord:
        connection = {k: v.decode() if isinstance(v, bytes) else v for k, v in INFO.items()}
        return KernelRecord(
            kernel_id="k-1", spec_name="remote", connection_info=connection, env={}, cwd="/srv",
            started=1.0, last_activity=2.0, provisioner=state,
        )

    def test_launched_kernel_carries_its_provisioner_state(self) -> None:
        """The provisioner's info is kept under its name, as JSON, without the connection info (the record holds it once)."""
        running = self.successResultOf(self.launcher().launch("k-1", "remote", remote_spec(), {}, "/srv"))
        state = running.provisioner_state
        self.assertEqual(state, ProvisionerState("scripted-provisioner", {"kernel_id": "k-1", "assigned_host": "node-7", "pid": 4321}))
        json.dumps(dict(state.info))

    def test_local_provisioner_and_unstorable_info_are_not_kept(self) -> None:
        """A LocalProvisioner's kernel ends with the daemon and cannot be reloaded; info that is not JSON cannot be stored."""
        local = LocalProvisioner(kernel_id="k-1", kernel_spec=remote_spec(), parent=None)
        self.assertIsNone(self.successResultOf(defer.ensureDeferred(persistable_state(local, "local-provisioner"))))
        odd = ScriptedProvisioner("k-1", remote_spec(), None)

        async def unstorable() -> dict[str, Any]:
            return {"kernel_id": "k-1", "handle": object()}

        odd.get_provisioner_info = unstorable  # type: ignore[method-assign]
        self.assertIsNone(self.successResultOf(defer.ensureDeferred(persistable_state(odd, "scripted-provisioner"))))

    def test_adopt_reloads_the_provisioner_and_polls_it(self) -> None:
        """A new provisioner gets back the stored info with the connection info; a kernel it reports running is watched as launched ones are."""
        state = ProvisionerState("scripted-provisioner", {"kernel_id": "k-1", "assigned_host": "node-7", "pid": 4321})
        running = self.successResultOf(self.launcher().adopt(self.record(state), remote_spec()))
        self.assertTrue(verifyObject(IRunningKernel, running))
        provisioner = self.factory.made[0]
        loaded = provisioner.calls[0]
        self.assertEqual(loaded[0], "load_provisioner_info")
        self.assertEqual(loaded[1]["assigned_host"], "node-7")
        self.assertEqual(loaded[1]["connection_info"]["key"], "remote-key")
        self.assertEqual(provisioner.calls[1], ("poll",))
        self.assertEqual(running.connection_info["shell_port"], 1)
        self.assertEqual(running.provisioner_state, state)
        provisioner.exit_code = 0
        self.clock.advance(2.0)
        self.assertEqual(self.successResultOf(running.whenEnded()), 0)

    def test_adopt_refuses_what_cannot_be_taken_over(self) -> None:
        """An ended kernel, a kernelspec that now names another provisioner, or a record without provisioner info is CannotAdopt."""
        state = ProvisionerState("scripted-provisioner", {"kernel_id": "k-1"})
        launcher = self.launcher()
        self.factory.exit_code = 0
        failure = self.failureResultOf(launcher.adopt(self.record(state), remote_spec()), CannotAdopt)
        self.assertIn("reports it ended", str(failure.value))
        failure = self.failureResultOf(launcher.adopt(self.record(state), remote_spec("other-provisioner")), CannotAdopt)
        self.assertIn("'other-provisioner', not 'scripted-provisioner'", str(failure.value))
        self.failureResultOf(launcher.adopt(self.record(None), remote_spec()), CannotAdopt)


class SocketTimeoutTests(unittest.TestCase):
    """gateway-provisioners' sockets are made non-blocking unless the operator set their timeout."""

    def test_default_and_operator_choice(self) -> None:
        """GP_SOCKET_TIMEOUT defaults to 0 (non-blocking); an operator's value is kept."""
        environ: dict[str, str] = {}
        nonblocking_provisioner_sockets(environ)
        self.assertEqual(environ, {"GP_SOCKET_TIMEOUT": "0"})
        environ = {"GP_SOCKET_TIMEOUT": "0.5"}
        nonblocking_provisioner_sockets(environ)
        self.assertEqual(environ, {"GP_SOCKET_TIMEOUT": "0.5"})


class ProvisionerParentTests(unittest.TestCase):
    """What ProvisionerParent gives a real provisioner: jupyter_client's LocalProvisioner prepares a launch with it."""

    def test_local_provisioner_pre_launch(self) -> None:
        """LocalProvisioner writes a private connection file through the parent and gets a command pointing at it."""
        runtime = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, runtime)
        spec = KernelSpec(argv=["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], language="python", display_name="p")
        path = os.path.join(runtime, "kernel-k-2.json")
        parent = ProvisionerParent("k-2", spec, path)
        provisioner = LocalProvisioner(kernel_id="k-2", kernel_spec=spec, parent=parent)
        kwargs = self.successResultOf(defer.ensureDeferred(provisioner.pre_launch(env={"KERNEL_X": "1"}, cwd=runtime)))
        self.addCleanup(parent.cleanup_connection_file)
        self.assertEqual(kwargs["cmd"][1:], ["-m", "ipykernel_launcher", "-f", path])
        self.assertEqual(kwargs["env"]["KERNEL_X"], "1")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            written = json.load(f)
        self.assertEqual(written["key"].encode(), provisioner.connection_info["key"])
        self.assertEqual(len(written["key"]), 64)
        self.assertEqual(written["ip"], "127.0.0.1")
        self.assertTrue(all(written[f"{c}_port"] > 0 for c in ("shell", "iopub", "stdin", "hb", "control")))

    def test_reuses_connection_info(self) -> None:
        """Loaded with an earlier launch's info (a restart), the parent writes the same ports and key."""
        runtime = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, runtime)
        spec = KernelSpec(argv=["python", "-f", "{connection_file}"], language="python", display_name="p")
        parent = ProvisionerParent("k-3", spec, os.path.join(runtime, "kernel-k-3.json"))
        earlier = dict(INFO, ip="127.0.0.1", key=b"k" * 64)
        parent.load_connection_info(earlier)
        parent.write_connection_file()
        self.addCleanup(parent.cleanup_connection_file)
        info = parent.get_connection_info()
        self.assertEqual({k: info[k] for k in earlier}, earlier)
