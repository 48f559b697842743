"""The kernel policies a daemon may run, built from plain values: seed notebook, culler, prespawn pool.

``install_kernel_policies`` runs while the daemon is built, before the
personalities: it loads the seed notebook (a bad one is a usage error, so
twistd exits with one line before listening), makes the seed a prepare hook
of every new kernel, and adds the culler to the gateway's services.
``prespawn_pool`` is called by a personality that hands kernels out (the
jupyter-websocket one): the pool it makes is started with the gateway's
services and reported to readiness.  What the culler spares is decided by
the kernels' roles (``Kernels.role``), which the pools set, not here.
"""

from __future__ import annotations

from twisted.python.usage import UsageError

from kgd.gateway import Gateway
from kgd.kernels.culling import Culler, CullPolicy
from kgd.kernels.prespawn import PrespawnPool
from kgd.kernels.seed import SeedConfigError, load_seed, seed_hook


def install_kernel_policies(
    gateway: Gateway,
    *,
    seed_uri: str = "",
    force_kernel_name: str = "",
    kernel_start_timeout: float = 60.0,
    cull: CullPolicy = CullPolicy(),
) -> None:
    """Seed every new kernel with ``seed_uri`` (if set) and cull by ``cull`` (if enabled)."""
    if seed_uri:
        try:
            seed = load_seed(seed_uri, gateway.specs, force_kernel_name)
        except SeedConfigError as error:
            raise UsageError(str(error)) from None
        gateway.seed = seed
        gateway.kernels.prepare_hooks.append(seed_hook(seed, gateway.reactor, kernel_start_timeout))
    if cull.enabled:
        gateway.services.append(Culler(gateway.kernels, cull, gateway.reactor))


def prespawn_pool(gateway: Gateway, count: int | None) -> PrespawnPool | None:
    """A pool of ``count`` ready kernels of the seed's kernelspec, run with the gateway; None for no count."""
    if not count:
        return None
    pool = PrespawnPool(gateway.kernels, count, gateway.seed.kernel_name if gateway.seed else None)
    gateway.services.append(pool)
    gateway.readiness.track("prespawn", pool.filled())
    return pool
