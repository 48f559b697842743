"""Choose the launcher per kernelspec: kgd's own for local kernels, a provisioner for the rest.

A kernelspec without ``metadata.kernel_provisioner`` (or naming
jupyter_client's ``local-provisioner``) runs as a child process through
kgd's ``LocalLauncher``.  One naming any other provisioner goes to the
``ProvisionedLauncher``, which is made (and jupyter_client's provisioning
package imported) only when such a kernel is first started, so a gateway
that never starts one never loads a provisioner.

Which provisioner a kernelspec names, and the start-up check of it, live
beside the kernelspecs in ``kgd.kernels.specs``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from jupyter_client.kernelspec import KernelSpec
from twisted.application.service import Service
from twisted.internet import defer
from zope.interface import implementer

from kgd.interfaces import IKernelLauncher, IRunningKernel
from kgd.kernels.records import CannotAdopt, KernelRecord
from kgd.kernels.specs import provisioner_name


@implementer(IKernelLauncher)
class DispatchingLauncher:
    """An ``IKernelLauncher`` that hands each launch to the launcher its kernelspec needs."""

    def __init__(self, local: IKernelLauncher, provisioned: Callable[[], IKernelLauncher]) -> None:
        self._local = local
        self._make_provisioned = provisioned
        self._provisioned: IKernelLauncher | None = None

    def launcher_for(self, spec: KernelSpec) -> IKernelLauncher:
        """The launcher for this kernelspec (the provisioned one is made on first use)."""
        if provisioner_name(spec) is None:
            return self._local
        if self._provisioned is None:
            self._provisioned = self._make_provisioned()
        return self._provisioned

    def launch(
        self,
        kernel_id: str,
        spec_name: str,
        spec: KernelSpec,
        env: Mapping[str, str],
        cwd: str,
        connection_info: dict[str, Any] | None = None,
    ) -> defer.Deferred[IRunningKernel]:
        try:
            launcher = self.launcher_for(spec)
        except Exception as error:
            return defer.fail(error)
        return launcher.launch(kernel_id, spec_name, spec, env, cwd, connection_info)

    def adopt(self, record: KernelRecord, spec: KernelSpec) -> defer.Deferred[IRunningKernel]:
        """Give a recorded provisioned kernel back to its provisioner (local kernels are adopted by process)."""
        try:
            launcher = self.launcher_for(spec)
        except Exception as error:
            return defer.fail(CannotAdopt(str(error)))
        if launcher is self._local:
            return defer.fail(CannotAdopt(f"kernelspec {record.spec_name} no longer names a provisioner"))
        return launcher.adopt(record, spec)  # type: ignore[attr-defined]

    def stop(self) -> defer.Deferred[None]:
        """Wait for provisioned launches under way (local launches are immediate)."""
        if self._provisioned is None:
            return defer.succeed(None)
        return defer.maybeDeferred(self._provisioned.stop)


class LauncherService(Service):
    """Stops the launcher once the kernels are stopped: launches still under way end killed and cleaned up."""

    def __init__(self, launcher: IKernelLauncher) -> None:
        self.launcher = launcher

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        return self.launcher.stop()


def make_launcher(reactor: Any, runtime_dir: str, local: IKernelLauncher) -> DispatchingLauncher:
    """The daemon's launcher: ``local`` for local kernelspecs, provisioners for the rest."""

    def provisioned() -> IKernelLauncher:
        from kgd.kernels.provisioned import ProvisionedLauncher

        return ProvisionedLauncher(reactor, runtime_dir)

    return DispatchingLauncher(local, provisioned)
