"""The daemon's service tree: ``makeService(config, reactor)``.

A ``MultiService`` whose children start in order and stop in reverse:

1. the runtime directory (connection files), the ZeroMQ context and the
   metrics' log observer,
2. ``Kernels``, which shuts every kernel down when it stops,
3. one ``strports`` listener per ``--listen`` description, serving the site,
4. ``NotifyService``, which tells systemd READY=1 once the listeners are up
   and every readiness condition holds, and STOPPING=1 first thing on stop.

So on SIGTERM the listeners close first, then every kernel is shut down,
then the sockets and the runtime directory go.  Collaborators (launcher,
sockets, specs) are arguments so tests can pass fakes and a memory reactor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger, globalLogPublisher

import kgd
from kgd.gateway import Gateway
from kgd.interfaces import IKernelLauncher, IZmqSockets
from kgd.kernels.dispatching import LauncherService, make_launcher, warn_about_provisioners
from kgd.kernels.launcher import LocalLauncher
from kgd.kernels.kernels import Kernels
from kgd.kernels.specs import KernelSpecs
from kgd.metrics import Metrics, MetricsService
from kgd.options import GatewayConfig
from kgd.personalities import available_personalities
from kgd.policies import install_kernel_policies
from kgd.readiness import Readiness
from kgd.systemd import Notifier, NotifyService
from kgd.web.cors import CorsSettings
from kgd.web.ops import ops_mounts
from kgd.web.resource import GatewayResource, Mount
from kgd.web.site import GatewaySite
from kgd.web.tls import listening_services

log = Logger()


class RuntimeDirectory(Service):
    """A private (0700) directory for connection files, removed on stop if kgd made it."""

    def __init__(self, path: str = "") -> None:
        if path:
            os.makedirs(path, mode=0o700, exist_ok=True)
            self.path, self._owned = path, False
        else:
            self.path, self._owned = tempfile.mkdtemp(prefix="kgd-"), True

    def stopService(self) -> None:
        super().stopService()
        if self._owned:
            shutil.rmtree(self.path, ignore_errors=True)


class SocketsService(Service):
    """Closes the ZeroMQ context once every kernel is gone."""

    def __init__(self, sockets: IZmqSockets) -> None:
        self.sockets = sockets

    def stopService(self) -> None:
        super().stopService()
        close = getattr(self.sockets, "close", None)
        if close is not None:
            close()


class SequentialStop(MultiService):
    """A MultiService that stops its children one at a time, last started first.

    twisted's MultiService asks every child to stop at once; kgd's children
    depend on the ones started before them (kernels need the ZeroMQ context
    to send shutdown_request, and the runtime directory, until each kernel
    is gone), so each child stops only after the one started after it has
    finished stopping.
    """

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        for service in reversed(list(self)):
            try:
                yield defer.maybeDeferred(service.stopService)
            except Exception:
                log.failure("stopping {service!r} failed", service=service)


class CleanExit(Service):
    """Makes a stop by SIGTERM or SIGINT exit with status 0 once everything is shut down.

    twistd re-raises the signal that stopped the reactor so the exit status
    shows it; kgd has shut every kernel down by then, so the stop was clean
    and is reported as such (systemd and shells see 0, not 143).
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def stopService(self) -> None:
        super().stopService()
        if hasattr(self._reactor, "_exitSignal"):
            self._reactor._exitSignal = None


def build_site(gateway: Gateway) -> GatewaySite:
    """The HTTP site: gateway policies in front of each configured personality.

    The first ``--api`` is served at the base URL, any other one below the
    base URL plus its own name.
    """
    config = gateway.config
    personalities = available_personalities()
    mounts = ops_mounts(gateway)
    for index, name in enumerate(config.api):
        personality = personalities[name]
        prefix = () if index == 0 else (name,)
        mounts.append(Mount(prefix, personality.resource(gateway), personality.is_public))
    cors = CorsSettings(**{field: getattr(config, field) for field in CorsSettings.__dataclass_fields__})
    root = GatewayResource(
        config.base_url, mounts, auth_token=config.auth_token, cors=cors, allowed_hosts=config.allow_host
    )
    return GatewaySite(root, clock=gateway.reactor, max_body_size=config.max_body_size, auth_token=config.auth_token)


def makeService(
    config: GatewayConfig,
    reactor: Any = None,
    *,
    launcher: IKernelLauncher | None = None,
    sockets: IZmqSockets | None = None,
    specs: KernelSpecs | None = None,
) -> MultiService:
    """Build the whole daemon from a validated config."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    top = SequentialStop()
    CleanExit(reactor).setServiceParent(top)
    runtime = RuntimeDirectory(config.runtime_dir)
    runtime.setServiceParent(top)
    if sockets is None:
        from kgd.kernels.zmq_sockets import TxZmqSockets

        sockets = TxZmqSockets()
    SocketsService(sockets).setServiceParent(top)
    metrics, readiness = Metrics(), Readiness()
    MetricsService(metrics, globalLogPublisher).setServiceParent(top)
    notifier = Notifier.from_environment(os.environ)
    specs = specs or KernelSpecs(config.default_kernel_name)
    warn_about_provisioners(specs, reactor)
    launcher = launcher or make_launcher(reactor, runtime.path, LocalLauncher(reactor, runtime.path))
    LauncherService(launcher).setServiceParent(top)  # stops after Kernels: waits for remote launches under way
    kernels = Kernels(
        specs,
        launcher,
        sockets,
        reactor,
        force_name=config.force_kernel_name,
        max_kernels=config.max_kernels,
        env_whitelist=config.env_whitelist,
        env_process_whitelist=config.env_process_whitelist,
        start_timeout=config.kernel_start_timeout,
        shutdown_wait=config.shutdown_wait_time,
    )
    kernels.setServiceParent(top)
    metrics.watch_kernels(kernels.list)
    gateway = Gateway(config, kernels, specs, reactor, metrics=metrics, readiness=readiness)
    install_kernel_policies(gateway)
    site = build_site(gateway)
    for service in gateway.services:
        service.setServiceParent(top)
    readiness.expect("listening")
    for listener in listening_services(config, site, reactor):
        listener.setServiceParent(top)
    NotifyService(notifier, readiness, lambda: len(kernels.list()), reactor).setServiceParent(top)
    log.info(
        "kgd {version} serving {api} on {listen} at base URL {base_url}",
        version=kgd.__version__,
        api=", ".join(config.api),
        listen=", ".join(config.listen),
        base_url=config.base_url,
    )
    return top
