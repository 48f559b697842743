"""Several kgd replicas sharing one Redis store behind HAProxy: the fixture of the replica tests.

Why: what replicas promise (any replica serves any kernel; a SIGKILLed
replica's kernels are taken over once its leases expire) only shows with
real processes: a real ``redis-server``, N real daemons and a real round-robin
balancer with no affinity, so consecutive requests for one kernel reach
different replicas, as they would in production.

``Cluster(root, replicas=2, lease_ttl=3)`` runs, all on loopback:

- a ``RedisServer`` (``tests.integration.redis_server``), the shared store;
- N ``Daemon`` s, each on its own port, with ``--kernel-store <redis url>``,
  ``--replica-id replica-<i>``, ``--lease-ttl``, one shared ``--runtime-dir``
  under ``root`` (whoever takes a kernel over finds its connection file) and
  ``--list-kernels``;
- an ``HAProxy`` (``tests.integration.haproxy``) in front, started last since
  its config names the daemons' ports.

``stop()`` ends every process it started and every kernel process any
replica launched or adopted: kernels outlive a replica by design (SIGKILL
leaves them running, SIGTERM detaches them), so stopping the daemons alone
would leak them.  It DELETEs every kernel through a live replica (retrying
while a killed owner's leases run out), stops the balancer, SIGTERMs the
daemons with ``Daemon.stop()`` (which fails if one of its kernels is still
alive), SIGKILLs any kernel still alive after all that, and reports it.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Mapping, Sequence, cast

from twisted.internet import defer, reactor
from twisted.python.failure import Failure

from tests.integration import haproxy, redis_server
from tests.integration.daemon import Client, Daemon, pid_alive, poll_until
from tests.integration.haproxy import HAProxy
from tests.integration.redis_server import RedisServer

STORE_TIMEOUT = 2.0


def missing() -> str | None:
    """Why a cluster cannot run here (redis-server or haproxy not installed), or None."""
    return redis_server.missing() or haproxy.missing()


def _unwrap(failure: Failure) -> Failure:
    """The first real failure behind a ``gatherResults`` ``FirstError``."""
    failure.trap(defer.FirstError)
    return failure.value.subFailure


class Cluster:
    """Redis, ``replicas`` kgd daemons on it and HAProxy in front, started and stopped together."""

    def __init__(
        self,
        root: str,
        replicas: int = 2,
        lease_ttl: float = 3.0,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        prefix: str = "kgd:",
        password: str | None = None,
    ) -> None:
        """``args`` and ``env`` go to every replica, after the cluster's own flags; a ``password`` reaches
        the replicas as ``KGD_REDIS_PASSWORD``, never on their command line."""
        self.root = root
        self.lease_ttl = lease_ttl
        self.prefix = prefix
        self.redis = RedisServer(root, password=password, persistent=True)  # a restarted Redis keeps its data, as in production
        store_url = f"redis://127.0.0.1:{self.redis.port}/0"
        env = {**(env or {}), **({"KGD_REDIS_PASSWORD": password} if password is not None else {})}
        self.runtime_dir = os.path.join(root, "runtime")
        self.replica_ids = [f"replica-{i}" for i in range(replicas)]
        self.daemons = [
            Daemon(
                [
                    "--kernel-store", store_url,
                    "--replica-id", replica_id,
                    "--lease-ttl", f"{lease_ttl:g}",
                    "--redis-prefix", prefix,
                    "--runtime-dir", self.runtime_dir,
                    "--list-kernels",
                    *args,
                ],
                env=env,
            )
            for replica_id in self.replica_ids
        ]
        self.clients = [Client(daemon) for daemon in self.daemons]
        self.balancer: HAProxy | None = None
        self._spawned: list[Daemon] = []
        self._store: Any = None

    # -- addresses -----------------------------------------------------------

    @property
    def lb_url(self) -> str:
        """The balancer's base URL: what a client of the cluster uses."""
        assert self.balancer is not None, "start() the cluster first"
        return self.balancer.url

    @property
    def lb_ws_url(self) -> str:
        """The balancer's ``ws://`` base, for ``tests.integration.ws.connect``."""
        assert self.balancer is not None, "start() the cluster first"
        return self.balancer.ws_url

    @property
    def lb(self) -> Client:
        """A client of the balancer (``Client`` only reads ``.url`` from what it is given)."""
        assert self.balancer is not None, "start() the cluster first"
        return Client(cast(Daemon, self.balancer))

    @property
    def urls(self) -> list[str]:
        """Each replica's own base URL, bypassing the balancer."""
        return [daemon.url for daemon in self.daemons]

    def live(self) -> list[int]:
        """Indexes of the replicas that listen and have not exited."""
        return [i for i, daemon in enumerate(self.daemons) if daemon.port is not None and not daemon.has_exited]

    # -- lifecycle -----------------------------------------------------------

    @defer.inlineCallbacks
    def start(self, timeout: float = 60.0) -> Any:
        """Redis, then every replica until it answers ``/readyz``, then the balancer in front of them."""
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        yield self.redis.start()
        started = []
        for daemon in self.daemons:
            started.append(daemon.start(timeout))
            self._spawned.append(daemon)  # spawned synchronously by start(): stop() must end it from now on
        yield defer.gatherResults(started, consumeErrors=True).addErrback(_unwrap)

        def ready(client: Client) -> defer.Deferred[bool]:
            return client.request("GET", "/readyz").addCallback(lambda response: response[0] == 200)

        yield defer.gatherResults(
            [poll_until(lambda c=client: ready(c), timeout=timeout) for client in self.clients], consumeErrors=True
        ).addErrback(_unwrap)
        self.balancer = HAProxy(self.root, [("127.0.0.1", cast(int, daemon.port)) for daemon in self.daemons])
        yield self.balancer.start()

    @defer.inlineCallbacks
    def kill(self, index: int, timeout: float = 10.0) -> Any:
        """SIGKILL replica ``index`` (its kernels keep running) and wait until it has exited."""
        daemon = self.daemons[index]
        daemon.signal(signal.SIGKILL)
        yield poll_until(lambda: daemon.has_exited, timeout=timeout)

    @defer.inlineCallbacks
    def owner(self, kernel_id: str) -> Any:
        """The index of the replica holding the kernel's lease, or None (read from Redis itself)."""
        if self._store is None:
            from kgd.kernels.redis_store import RedisKernelStore, connect
            from kgd.kernels.redis_url import parse_redis_url

            address = parse_redis_url(self.redis.url)
            self._store = RedisKernelStore(connect(address, reactor, STORE_TIMEOUT), address, self.prefix, reactor, STORE_TIMEOUT)
        replica_id = yield self._store.owner(kernel_id)
        return self.replica_ids.index(replica_id) if replica_id in self.replica_ids else None

    def kernel_pids(self) -> list[int]:
        """Every kernel process any replica logged as launched, adopted or taken over (a takeover is an adoption)."""
        return sorted({pid for daemon in self._spawned for pid in daemon.kernel_pids})

    @defer.inlineCallbacks
    def delete_all_kernels(self, timeout: float | None = None) -> Any:
        """DELETE every kernel any live replica lists, until none is listed.

        Retried: a kernel whose owner was SIGKILLed may only be deletable once
        another replica took it over, up to ``lease_ttl + lease_ttl / 3`` later.
        """
        live = [self.clients[i] for i in self.live()]
        if not live:
            return

        @defer.inlineCallbacks
        def deleted_all() -> Any:
            listed: set[str] = set()
            for client in live:
                status, _, body = yield client.request("GET", "/api/kernels")
                if status != 200:
                    raise AssertionError(f"GET /api/kernels on {client.daemon.url}: {status} {body!r}")
                listed |= {kernel["id"] for kernel in body}
            for kernel_id in sorted(listed):
                yield live[0].request("DELETE", f"/api/kernels/{kernel_id}")
            return not listed

        yield poll_until(deleted_all, timeout=timeout or 2 * self.lease_ttl + 30, interval=0.25)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """End every kernel, the balancer, every replica and Redis; fail (after cleaning up) if a kernel outlived its end."""
        failures: list[Failure] = []

        @defer.inlineCallbacks
        def attempt(step: Any) -> Any:
            try:
                yield step()
            except Exception:
                failures.append(Failure())

        yield attempt(self.delete_all_kernels)
        if self.balancer is not None:
            yield attempt(self.balancer.stop)
        # Kernels NOT surviving: each Daemon.stop fails (and kills its kernels) if one of them is alive.
        results = yield defer.DeferredList([daemon.stop() for daemon in self._spawned], consumeErrors=True)
        failures += [result for ok, result in results if not ok]
        survivors = [pid for pid in self.kernel_pids() if pid_alive(pid)]
        for pid in survivors:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if survivors:
            failures.append(Failure(AssertionError(f"kernel processes outlived the cluster: {survivors}")))
        if self._store is not None:
            yield attempt(self._store.disconnect)
        yield attempt(self.redis.stop)
        if failures:
            failures[0].raiseException()
