"""The daemon's service tree: ``makeService(settings, reactor)``.

The one place that reads ``GatewaySettings`` (besides the tap): each part
gets the plain values it needs as arguments, and each personality a value of
its own ``settings_type``, filled here by field name.

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

import dataclasses
import os
import shutil
import tempfile
from typing import Any, Mapping

from jupyter_core.paths import jupyter_runtime_dir

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger, globalLogPublisher
from twisted.python.usage import UsageError

import kgd
from kgd.gateway import Gateway
from kgd.limits import OpenFiles, max_connections, raise_open_files_limit
from kgd.interfaces import IKernelLauncher, IPersonality, IZmqSockets
from kgd.kernels.adoption import KernelAdopter, ProcessAdopter, record_of
from kgd.kernels.culling import CullPolicy
from kgd.kernels.dispatching import LauncherService, make_launcher
from kgd.kernels.file_store import BadStoreDirectory, FileKernelStore, store_directory
from kgd.kernels.launcher import LocalLauncher
from kgd.kernels.kernels import Kernels
from kgd.kernels.process_identity import this_host
from kgd.kernels.process_watch import watch_exit
from kgd.kernels.session_table import MemorySessionTable
from kgd.kernels.specs import KernelSpecs, warn_about_provisioners
from kgd.metrics import Metrics, MetricsService
from kgd.options import SETTINGS_BY_KEY, GatewaySettings
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
        self.sockets.close()


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


def personality_settings(personality: IPersonality, settings: GatewaySettings) -> Any:
    """The personality's own settings value, each field filled from the kgd setting of its name.

    A field that names no setting is a plugin bug, reported when the daemon
    starts rather than when a request first reads it.
    """
    fields = dataclasses.fields(personality.settings_type)
    unknown = [f.name for f in fields if f.name not in SETTINGS_BY_KEY]
    if unknown:
        raise TypeError(f"personality {personality.name!r} reads settings kgd does not have: {', '.join(unknown)}")
    return personality.settings_type(**{f.name: getattr(settings, f.name) for f in fields})


def kernel_store(url: str) -> FileKernelStore | None:
    """The ``--kernel-store`` directory, or None (no store, or Redis); a directory kgd cannot use stops the daemon with the reason."""
    if not url or is_redis_url(url):
        return None
    try:
        return FileKernelStore(store_directory(url))
    except BadStoreDirectory as error:
        raise UsageError(f"--kernel-store: {error}") from None


def is_redis_url(url: str) -> bool:
    """True for a ``--kernel-store`` that replicas share (Redis)."""
    return url.startswith(("redis://", "rediss://"))


def detached_log_directory(runtime_dir: str) -> str:
    """Where replicas' detached kernels write their output: beside their connection files."""
    path = os.path.join(runtime_dir, "logs")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def replicate(
    kernels: Kernels, store: Any, address: Any, settings: GatewaySettings, reactor: Any, readiness: Readiness
) -> tuple[Service, Service]:
    """This replica among the others sharing the Redis store: its ``Replication`` (mirrors and takeover) and
    the connections (leases, events) that must outlive the kernels' stop."""
    from kgd.kernels.leases import LeaseKeeper
    from kgd.kernels.replica_services import ReplicaConnections, replica_name
    from kgd.kernels.replication import Replication

    replica_id = replica_name(settings.replica_id, this_host(), os.getpid())
    keeper = LeaseKeeper(store, replica_id, settings.lease_ttl, reactor, on_lost=kernels.let_go)
    replication = Replication(
        kernels, store, keeper, replica_id, reactor, readiness, lease_ttl=settings.lease_ttl, max_kernels=settings.max_kernels
    )
    connections = ReplicaConnections(store, address, settings.redis_prefix, keeper, replication.received, reactor)
    log.info(
        "replica {replica_id} sharing kernels through {store!r} (lease TTL {ttl:g} s)",
        replica_id=replica_id, store=store, ttl=settings.lease_ttl, event="replica_started",
    )
    return replication, connections


def build_site(
    settings: GatewaySettings,
    gateway: Gateway,
    personalities: Mapping[str, IPersonality] | None = None,
) -> GatewaySite:
    """The HTTP site: gateway policies in front of each configured personality.

    The first ``--api`` is served at the base URL, any other one below the
    base URL plus its own name.
    """
    personalities = personalities or available_personalities()
    mounts = ops_mounts(gateway, metrics_public=settings.metrics_public)
    for index, name in enumerate(settings.api):
        personality = personalities[name]
        prefix = () if index == 0 else (name,)
        resource = personality.resource(personality_settings(personality, settings), gateway)
        mounts.append(Mount(prefix, resource, personality.is_public))
    cors = CorsSettings(**{field: getattr(settings, field) for field in CorsSettings.__dataclass_fields__})
    root = GatewayResource(
        settings.base_url, mounts, auth_token=settings.auth_token, cors=cors, allowed_hosts=settings.allow_host
    )
    return GatewaySite(
        root, clock=gateway.reactor, max_body_size=settings.max_body_size, auth_token=settings.auth_token
    )


def makeService(
    settings: GatewaySettings,
    reactor: Any = None,
    *,
    launcher: IKernelLauncher | None = None,
    sockets: IZmqSockets | None = None,
    specs: KernelSpecs | None = None,
    open_files: OpenFiles | None = None,
) -> MultiService:
    """Build the whole daemon from validated settings.

    ``open_files`` is the descriptor limit to plan for; by default the soft
    limit is raised to the hard one first.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    top = SequentialStop()
    CleanExit(reactor).setServiceParent(top)
    replicated = is_redis_url(settings.kernel_store)
    file_store = kernel_store(settings.kernel_store)
    # With a store, connection files live beside the records (for replicas: in one directory per host):
    # kernels outlive the daemon, so do their files.
    runtime = RuntimeDirectory(
        settings.runtime_dir
        or (file_store.runtime_directory() if file_store is not None else "")
        or (os.path.join(jupyter_runtime_dir(), "kgd-replicas") if replicated else "")
    )
    runtime.setServiceParent(top)
    open_files = open_files or raise_open_files_limit()
    settings = settings.replace(max_connections=max_connections(settings.max_connections, open_files))
    log.info(
        "open files limit {soft} (was {before}, hard {hard}): at most {connections} channels WebSockets",
        soft=open_files.soft,
        before=open_files.before,
        hard=open_files.hard,
        connections=settings.max_connections,
        event="limits",
    )
    if sockets is None:
        from kgd.kernels.zmq_sockets import TxZmqSockets

        sockets = TxZmqSockets(max_sockets=open_files.soft)
    SocketsService(sockets).setServiceParent(top)
    metrics, readiness = Metrics(), Readiness()
    MetricsService(metrics, globalLogPublisher).setServiceParent(top)
    notifier = Notifier.from_environment(os.environ)
    specs = specs or KernelSpecs(settings.default_kernel_name)
    warn_about_provisioners(specs, reactor)
    detached_logs = (
        file_store.log_directory() if file_store is not None else detached_log_directory(runtime.path) if replicated else None
    )
    launcher = launcher or make_launcher(
        reactor,
        runtime.path,
        LocalLauncher(reactor, runtime.path, ip=settings.kernel_ip, detached_log_dir=detached_logs),
    )
    LauncherService(launcher).setServiceParent(top)  # stops after Kernels: waits for remote launches under way
    store: Any = file_store
    if replicated:
        from kgd.kernels.replica_services import redis_store

        store, redis_address = redis_store(settings.kernel_store, settings.redis_prefix, reactor)
    kernels = Kernels(
        specs,
        launcher,
        sockets,
        reactor,
        force_name=settings.force_kernel_name,
        max_kernels=settings.max_kernels,
        env_whitelist=settings.env_whitelist,
        env_process_whitelist=settings.env_process_whitelist,
        start_timeout=settings.kernel_start_timeout,
        shutdown_wait=settings.shutdown_wait_time,
        store=store,
        record_of=record_of,
        adopt_process=KernelAdopter(
            ProcessAdopter(
                this_host(), lambda pid, start_time: watch_exit(reactor, pid, start_time), runtime_dir=runtime.path
            ),
            lambda record, spec: launcher.adopt(record, spec),
        ),
        detach_on_stop=settings.on_stop == "detach",
    )
    if replicated:
        replication, connections = replicate(kernels, store, redis_address, settings, reactor, readiness)
        connections.setServiceParent(top)  # stops after Kernels: leases renewed while kernels stop
    kernels.setServiceParent(top)
    if replicated:
        replication.setServiceParent(top)
    # Among replicas, each counts the kernels it supervises: the sum is the cluster's.
    metrics.watch_kernels(lambda: [kernel for kernel in kernels.list() if not kernel.mirrored])
    gateway = Gateway(
        kernels, specs, reactor, base_url=settings.base_url, metrics=metrics, readiness=readiness,
        # Among replicas, a session made through one is served by every one.
        session_table=store.session_table() if replicated else MemorySessionTable(),
    )
    personalities = available_personalities()
    install_kernel_policies(
        gateway,
        # A personality that seeds its own kernels (notebook-http) would have them seeded twice.
        seed_uri="" if any(personalities[name].seeds_kernels for name in settings.api) else settings.seed_uri,
        force_kernel_name=settings.force_kernel_name,
        kernel_start_timeout=settings.kernel_start_timeout,
        cull=CullPolicy(settings.cull_idle_timeout, settings.cull_interval, settings.cull_connected, settings.cull_busy),
    )
    site = build_site(settings, gateway, personalities)
    for service in gateway.services:
        service.setServiceParent(top)
    readiness.expect("listening")
    if settings.kernel_store:
        readiness.track("adoption", kernels.adopted())
    listeners = listening_services(
        settings.listen, site, reactor, certfile=settings.certfile, keyfile=settings.keyfile, client_ca=settings.client_ca
    )
    for listener in listeners:
        listener.setServiceParent(top)
    NotifyService(notifier, readiness, lambda: len(kernels.list()), reactor).setServiceParent(top)
    log.info(
        "kgd {version} serving {api} on {listen} at base URL {base_url}",
        version=kgd.__version__,
        api=", ".join(settings.api),
        listen=", ".join(settings.listen),
        base_url=settings.base_url,
    )
    return top
