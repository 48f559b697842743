"""Choosing the launcher per kernelspec, and the start-up warnings about provisioners."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from twisted.internet import defer
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer

from kgd.interfaces import IKernelLauncher
from kgd.kernels.dispatching import DispatchingLauncher, LauncherService
from kgd.kernels.specs import provisioner_name, provisioner_warning, warn_about_provisioners
from kgd.kernels.specs import KernelSpecs, ProvisionerNotInstalled, UnknownKernelSpec


def spec_with(metadata: Any) -> KernelSpec:
    return KernelSpec(argv=["python"], display_name="x", language="python", metadata=metadata)


@implementer(IKernelLauncher)
class RecordingLauncher:
    """Remembers which kernel ids it was asked to launch."""

    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, kernel_id: str, spec_name: str, spec: KernelSpec, env: Any, cwd: str, connection_info: Any = None) -> Any:
        self.launched.append(kernel_id)
        return defer.succeed(None)

    def stop(self) -> None:
        pass


class ProvisionerNameTests(unittest.TestCase):
    """Which kernelspecs kgd launches itself."""

    def test_local(self) -> None:
        """No stanza, a malformed stanza, or jupyter_client's local-provisioner: kgd's own launcher."""
        for metadata in ({}, {"kernel_provisioner": "oops"}, {"kernel_provisioner": {}}, {"kernel_provisioner": {"provisioner_name": "local-provisioner"}}):
            self.assertIsNone(provisioner_name(spec_with(metadata)), metadata)

    def test_named(self) -> None:
        """Any other provisioner name is returned."""
        self.assertEqual(provisioner_name(spec_with({"kernel_provisioner": {"provisioner_name": "kubernetes-provisioner"}})), "kubernetes-provisioner")


class DispatchingLauncherTests(unittest.TestCase):
    """Local kernelspecs go to the local launcher, the others to a provisioned launcher made on first use."""

    def test_dispatch(self) -> None:
        """The provisioned launcher is made once, only when a kernelspec needs it."""
        local, provisioned = RecordingLauncher(), RecordingLauncher()
        made: list[RecordingLauncher] = []

        def make() -> RecordingLauncher:
            made.append(provisioned)
            return provisioned

        launcher = DispatchingLauncher(local, make)
        launcher.launch("a", "python3", spec_with({}), {}, "/")
        self.assertEqual(made, [])
        remote = spec_with({"kernel_provisioner": {"provisioner_name": "yarn-provisioner"}})
        launcher.launch("b", "yarn", remote, {}, "/")
        launcher.launch("c", "yarn", remote, {}, "/")
        self.assertEqual((local.launched, provisioned.launched, len(made)), (["a"], ["b", "c"], 1))

    def test_factory_failure_is_a_failed_launch(self) -> None:
        """If the provisioned launcher cannot even be made, that launch fails; local launches are unaffected."""
        local = RecordingLauncher()

        def broken() -> IKernelLauncher:
            raise ImportError("no provisioning here")

        launcher = DispatchingLauncher(local, broken)
        remote = spec_with({"kernel_provisioner": {"provisioner_name": "yarn-provisioner"}})
        self.failureResultOf(launcher.launch("b", "yarn", remote, {}, "/"), ImportError)
        self.successResultOf(launcher.launch("a", "python3", spec_with({}), {}, "/"))
        self.assertEqual(local.launched, ["a"])


class StoppableLauncher(RecordingLauncher):
    """A launcher whose stop() the test completes."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping: defer.Deferred[None] = defer.Deferred()

    def stop(self) -> defer.Deferred[None]:
        return self.stopping


class LauncherStopTests(unittest.TestCase):
    """Stopping the daemon waits for the provisioned launcher's launches under way."""

    def test_service_waits_for_provisioned_launcher(self) -> None:
        """LauncherService's stop waits for the provisioned launcher's stop; without one made, it is immediate."""
        provisioned = StoppableLauncher()
        launcher = DispatchingLauncher(RecordingLauncher(), lambda: provisioned)
        idle = LauncherService(launcher)
        idle.startService()
        self.successResultOf(defer.maybeDeferred(idle.stopService))
        launcher.launch("b", "yarn", spec_with({"kernel_provisioner": {"provisioner_name": "yarn-provisioner"}}), {}, "/")
        busy = LauncherService(launcher)
        busy.startService()
        stopped = defer.maybeDeferred(busy.stopService)
        self.assertNoResult(stopped)
        provisioned.stopping.callback(None)
        self.successResultOf(stopped)


class StartupWarningTests(unittest.TestCase):
    """What kgd says at start-up about kernelspecs that name provisioners."""

    def setUp(self) -> None:
        self.kernels = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.kernels)
        for name, metadata in (
            ("plain", {}),
            ("remote", {"kernel_provisioner": {"provisioner_name": "local-provisioner"}}),
            ("ghost", {"kernel_provisioner": {"provisioner_name": "no-such-provisioner-kgd-test"}}),
        ):
            os.mkdir(os.path.join(self.kernels, name))
            with open(os.path.join(self.kernels, name, "kernel.json"), "w") as f:
                json.dump({"argv": ["python"], "display_name": name, "language": "python", "metadata": metadata}, f)
        self.specs = KernelSpecs(manager=KernelSpecManager(kernel_dirs=[self.kernels]))

    def test_pure_warning(self) -> None:
        """A spec naming a provisioner gets a warning on a non-asyncio reactor only."""
        remote = spec_with({"kernel_provisioner": {"provisioner_name": "yarn-provisioner"}})
        self.assertIn("twistd -r asyncio kgd", provisioner_warning("yarn", remote, asyncio_reactor=False))
        self.assertIsNone(provisioner_warning("yarn", remote, asyncio_reactor=True))
        self.assertIsNone(provisioner_warning("plain", spec_with({}), asyncio_reactor=False))

    def test_not_installed(self) -> None:
        """A spec naming an uninstalled provisioner is a ProvisionerNotInstalled naming it; an unknown name stays a plain miss."""
        error = self.assertRaises(ProvisionerNotInstalled, self.specs.get, "ghost")
        self.assertIn("no-such-provisioner-kgd-test", str(error))
        self.assertIn("not installed", str(error))
        error = self.assertRaises(UnknownKernelSpec, self.specs.get, "nothing")
        self.assertNotIsInstance(error, ProvisionerNotInstalled)

    def test_logged_at_startup(self) -> None:
        """The uninstalled provisioner is logged as a warning at start-up, and local specs are not."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        warn_about_provisioners(self.specs, MemoryReactor())
        warnings = [e for e in events if e.get("log_namespace") == "kgd.kernels.specs"]
        self.assertEqual([e["event"] for e in warnings], ["provisioner_not_installed"])
        self.assertEqual(warnings[0]["log_level"], LogLevel.warn)
        self.assertIn("no-such-provisioner-kgd-test", str(warnings[0]["error"]))
