"""Wiring of the kernel policies from the config: seed notebook, prespawn pool, culling.

``install_kernel_policies(gateway)`` runs while the daemon is built, before
the personalities: it loads the seed notebook (a bad one is a usage error,
so twistd exits with one line before listening), makes the seed a prepare
hook of every new kernel, and adds the culler to the gateway's services.
``prespawn_pool(gateway)`` is called by the jupyter-websocket personality:
the pool it makes is started with the gateway's services and reported to
readiness.  notebook-http has its own pool and seeds from its own notebook,
so with that personality configured the seed hook is not installed here.
"""

from __future__ import annotations

from twisted.python.usage import UsageError

from kgd.gateway import Gateway
from kgd.kernels.culling import Culler, CullPolicy
from kgd.kernels.prespawn import PrespawnPool
from kgd.kernels.seed import Seed, SeedConfigError, load_seed, seed_hook

SEED_KEY = "seed"
POOL_KEY = "prespawn"
#: Pools whose idle kernels are spare capacity, never culled (notebook-http registers its own).
POOL_KEYS = (POOL_KEY, "notebook-http-pool")


def install_kernel_policies(gateway: Gateway) -> None:
    """Add the seed hook and the culler for this config."""
    config, kernels = gateway.config, gateway.kernels
    if config.seed_uri and "notebook-http" not in config.api:
        try:
            seed = load_seed(config.seed_uri, gateway.specs, config.force_kernel_name)
        except SeedConfigError as error:
            raise UsageError(str(error)) from None
        gateway.extras[SEED_KEY] = seed
        kernels.prepare_hooks.append(seed_hook(seed, gateway.reactor, config.kernel_start_timeout))
    policy = CullPolicy(config.cull_idle_timeout, config.cull_interval, config.cull_connected, config.cull_busy)
    if policy.enabled:

        def pooled(kernel: object) -> bool:
            pools = (gateway.extras.get(key) for key in POOL_KEYS)
            return any(pool is not None and pool.holds(kernel) for pool in pools)

        gateway.services.append(Culler(kernels, policy, gateway.reactor, exempt=pooled))


def prespawn_pool(gateway: Gateway) -> PrespawnPool | None:
    """The ``--prespawn-count`` pool, made once per gateway; None if prespawning is off."""
    if POOL_KEY in gateway.extras:
        return gateway.extras[POOL_KEY]
    count = gateway.config.prespawn_count
    if not count:
        return None
    seed: Seed | None = gateway.extras.get(SEED_KEY)
    pool = PrespawnPool(gateway.kernels, count, seed.kernel_name if seed else None)
    gateway.extras[POOL_KEY] = pool
    gateway.services.append(pool)
    gateway.readiness.track("prespawn", pool.filled())
    return pool
