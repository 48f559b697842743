"""Idle-kernel culling (``--cull-idle-timeout`` and friends), with Jupyter Server's semantics.

Off unless the timeout is above 0.  Every ``--cull-interval`` seconds (300
if the interval is 0) each kernel is checked: a ``dead`` kernel is shut down
at once; any other is shut down when it has been inactive (by
``last_activity``) for longer than the timeout, unless it is busy (and
``--cull-busy`` is off) or has connections (and ``--cull-connected`` is off).
A kernelspec's ``metadata.cull_idle_timeout`` overrides the timeout for its
kernels.  Only kernels of the ``USER`` role are culled: kernels that a pool
owns (waiting in the prespawn pool, members of notebook-http's pool) are
spare capacity, and keeping them idle is what the pool is for.

``is_cullable`` is the pure rule; ``Culler`` is the Service that applies it
on a ``LoopingCall`` driven by an injectable clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kgd.kernels.activity import clock_now
from kgd.kernels.kernel import Kernel
from kgd.kernels.kernels import USER, Kernels, UnknownKernel

log = Logger()

DEFAULT_INTERVAL = 300.0


@dataclass(frozen=True)
class CullPolicy:
    """The ``--cull-*`` settings."""

    idle_timeout: float = 0.0
    interval: float = DEFAULT_INTERVAL
    connected: bool = False
    busy: bool = False

    @property
    def enabled(self) -> bool:
        return self.idle_timeout > 0

    @property
    def effective_interval(self) -> float:
        """The check period; Jupyter Server resets a non-positive interval to 300 s."""
        return self.interval if self.interval > 0 else DEFAULT_INTERVAL


def kernel_timeout(policy: CullPolicy, kernel: Kernel) -> float:
    """The idle timeout for this kernel: its kernelspec's override, else the policy's."""
    metadata = getattr(kernel.spec, "metadata", None) or {}
    override = metadata.get("cull_idle_timeout")
    if isinstance(override, (int, float)) and not isinstance(override, bool) and override >= 0:
        return float(override)
    return policy.idle_timeout


def is_cullable(policy: CullPolicy, kernel: Kernel, now: datetime) -> str | None:
    """Why ``kernel`` should be culled now ("dead" or "idle"), or None to keep it."""
    if kernel.execution_state == "dead":
        return "dead"
    timeout = kernel_timeout(policy, kernel)
    if timeout <= 0:
        return None
    if kernel.execution_state == "busy" and not policy.busy:
        return None
    if kernel.connections and not policy.connected:
        return None
    if (now - kernel.last_activity).total_seconds() > timeout:
        return "idle"
    return None


class Culler(Service):
    """Applies a ``CullPolicy`` to ``Kernels`` periodically."""

    name = "culler"

    def __init__(
        self,
        kernels: Kernels,
        policy: CullPolicy,
        clock: IReactorTime,
    ) -> None:
        self.kernels = kernels
        self.policy = policy
        self._clock = clock
        self._loop: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        if not self.policy.enabled:
            return
        self._loop = task.LoopingCall(self.cull_once)
        self._loop.clock = self._clock
        self._loop.start(self.policy.effective_interval, now=False).addErrback(
            lambda failure: log.failure("culling stopped", failure)
        )
        log.info(
            "culling kernels idle for more than {timeout:g} s, checking every {interval:g} s",
            timeout=self.policy.idle_timeout,
            interval=self.policy.effective_interval,
        )

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def cull_once(self) -> defer.Deferred[Any]:
        """Check every kernel once; fires when the culled ones are shut down."""
        now = clock_now(self._clock)
        shutdowns = []
        for kernel in self.kernels.list():
            if self.kernels.role(kernel) != USER or kernel.mirrored:
                continue  # a pool's kernel, or another replica's (its owner culls it)
            reason = is_cullable(self.policy, kernel, now)
            if reason is None:
                continue
            idle = max(0, int((now - kernel.last_activity).total_seconds()))
            log.info(
                "Culling '{state}' kernel '{spec_name}' ({kernel_id}) with {connections} connections "
                "due to {idle} seconds of inactivity.",
                state=kernel.execution_state,
                spec_name=kernel.spec_name,
                kernel_id=kernel.kernel_id,
                connections=kernel.connections,
                idle=idle,
                reason=reason,
                event="kernel_culled",
            )
            shutdowns.append(self.kernels.shutdown_kernel(kernel.kernel_id).addErrback(lambda f: f.trap(UnknownKernel)))
        return defer.DeferredList(shutdowns, consumeErrors=True)
