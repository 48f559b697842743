"""Choose the launcher per kernelspec: kgd's own for local kernels, a provisioner for the rest.

A kernelspec without ``metadata.kernel_provisioner`` (or naming
jupyter_client's ``local-provisioner``) runs as a child process through
kgd's ``LocalLauncher``.  One naming any other provisioner goes to the
``ProvisionedLauncher``, which is made (and jupyter_client's provisioning
package imported) only when such a kernel is first started, so a gateway
that never starts one never loads a provisioner.

``warn_about_provisioners`` is the start-up check: a kernelspec naming a
provisioner that is not installed, or one needing the asyncio reactor (all
provisioners are asyncio code) while the reactor is another, gets a clear
warning in the log; starting such a kernel fails with a clear error.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from jupyter_client.kernelspec import KernelSpec
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from kgd.interfaces import IKernelLauncher, IRunningKernel
from kgd.kernels.specs import KernelSpecs, ProvisionerNotInstalled

log = Logger()

LOCAL_PROVISIONER = "local-provisioner"


def is_asyncio_reactor(reactor: Any) -> bool:
    """True if ``reactor`` runs on an asyncio loop, as provisioners need."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    return isinstance(reactor, AsyncioSelectorReactor)


def provisioner_name(spec: KernelSpec) -> str | None:
    """The provisioner a kernelspec names, or None if kgd launches it itself."""
    metadata = spec.metadata if isinstance(spec.metadata, dict) else {}
    stanza = metadata.get("kernel_provisioner")
    name = stanza.get("provisioner_name") if isinstance(stanza, dict) else None
    if not isinstance(name, str) or not name or name == LOCAL_PROVISIONER:
        return None
    return name


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


def provisioner_warning(name: str, spec: KernelSpec, asyncio_reactor: bool) -> str | None:
    """The warning for a kernelspec naming a provisioner the running reactor cannot drive, if any."""
    provisioner = provisioner_name(spec)
    if asyncio_reactor or provisioner is None:
        return None
    return (
        f"kernelspec {name} names the kernel provisioner {provisioner}, which needs the asyncio reactor: "
        "start the gateway with 'twistd -r asyncio kgd', or starting this kernel will fail"
    )


def make_launcher(reactor: Any, runtime_dir: str, local: IKernelLauncher) -> DispatchingLauncher:
    """The daemon's launcher: ``local`` for local kernelspecs, provisioners for the rest."""

    def provisioned() -> IKernelLauncher:
        from kgd.kernels.provisioned import ProvisionedLauncher

        return ProvisionedLauncher(reactor, runtime_dir)

    return DispatchingLauncher(local, provisioned)


def warn_about_provisioners(specs: KernelSpecs, reactor: Any) -> None:
    """At start-up, log each kernelspec whose provisioner is not installed or needs the asyncio reactor."""
    asyncio_reactor = is_asyncio_reactor(reactor)
    for name in specs.names():
        try:
            spec = specs.get(name)
        except ProvisionerNotInstalled as error:
            log.warn("{error}", error=error, event="provisioner_not_installed")
            continue
        except (LookupError, ValueError, OSError):
            continue
        warning = provisioner_warning(name, spec, asyncio_reactor)
        if warning is not None:
            log.warn("{warning}", warning=warning, event="provisioner_needs_asyncio")
