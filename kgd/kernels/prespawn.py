"""Prespawned kernels (``--prespawn-count``), handed out to new kernel requests first.

``PrespawnPool`` keeps ``size`` kernels of one kernelspec started (and
seeded, since they start through ``Kernels`` and its prepare hooks) ahead of
demand.  ``take()`` gives one away: a ready kernel at once, or the next one
that finishes starting; the pool then starts a replacement in the
background.  Pooled kernels are ordinary members of ``Kernels``: they are
listed, count toward ``--max-kernels`` and are shut down with the daemon.
The reference starts prespawned kernels but never hands them out.

This pool serves the jupyter-websocket personality; notebook-http lends its
kernels one request at a time and keeps its own pool of seeded kernels.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from kgd.kernels.kernel import Kernel
from kgd.kernels.kernel_request import choose_kernel_name
from kgd.kernels.kernels import USER, KernelLimitReached, Kernels

log = Logger()

#: The role of kernels waiting in the pool (``Kernels.role``); a taken kernel becomes ``USER``'s.
PRESPAWN = "prespawn"


class PrespawnPool(Service):
    """``size`` ready kernels of one kernelspec, replaced as they are taken."""

    name = "prespawn"

    def __init__(self, kernels: Kernels, size: int, kernel_name: str | None = None) -> None:
        self.kernels = kernels
        self.size = size
        self.kernel_name = choose_kernel_name(kernel_name, kernels.specs.default_name, kernels.force_name)
        self._ready: deque[Kernel] = deque()
        self._takers: deque[defer.Deferred[Kernel | None]] = deque()
        self._starting = 0
        self._filled = False
        self._fill_waiters: list[defer.Deferred[None]] = []

    # -- lifecycle -----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        defer.DeferredList(self._fill(), consumeErrors=True).addCallback(self._first_fill_done)
        log.info("prespawning {count} {name} kernels", count=self.size, name=self.kernel_name, event="prespawn")

    def stopService(self) -> None:
        """Stop refilling; anyone waiting for a kernel falls back to a normal start."""
        super().stopService()
        takers, self._takers = self._takers, deque()
        for taker in takers:
            taker.callback(None)

    def filled(self) -> defer.Deferred[None]:
        """Fires once every kernel of the first fill has started or failed (for readiness)."""
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._filled:
            waiter.callback(None)
        else:
            self._fill_waiters.append(waiter)
        return waiter

    def _first_fill_done(self, _: Any) -> None:
        self._filled = True
        waiters, self._fill_waiters = self._fill_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- queries -------------------------------------------------------------

    def matches(self, name: str | None) -> bool:
        """True if a request for kernelspec ``name`` can be served from this pool."""
        return choose_kernel_name(name, self.kernels.specs.default_name, self.kernels.force_name) == self.kernel_name

    def holds(self, kernel: Kernel) -> bool:
        """True if ``kernel`` waits in the pool (nobody has been given it yet)."""
        return kernel in self._ready

    @property
    def ready_count(self) -> int:
        """Kernels ready to be taken now."""
        self._drop_gone()
        return len(self._ready)

    # -- handing out ---------------------------------------------------------

    def take(self) -> defer.Deferred[Kernel | None]:
        """A pooled kernel, now or once one finishes starting; None if the pool has none to give."""
        self._drop_gone()
        if self._ready:
            kernel = self._ready.popleft()
            self.kernels.set_role(kernel, USER)
            # Handing out is activity: the culler must not take the time spent waiting here as idleness.
            kernel.activity.touch()
            self._fill()
            return defer.succeed(kernel)
        self._fill()
        if self._starting > len(self._takers) and self.running:
            taker: defer.Deferred[Kernel | None] = defer.Deferred()
            self._takers.append(taker)
            return taker
        return defer.succeed(None)

    # -- filling -------------------------------------------------------------

    def _drop_gone(self) -> None:
        self._ready = deque(k for k in self._ready if not k.gone)

    def _fill(self) -> list[defer.Deferred[Any]]:
        """Start kernels until ready plus starting reach ``size``."""
        if not self.running:
            return []
        missing = self.size - (len(self._ready) + self._starting - len(self._takers))
        started = []
        for _ in range(missing):
            self._starting += 1
            started.append(self.kernels.start_kernel(self.kernel_name, role=PRESPAWN).addCallbacks(self._started, self._failed))
        return started

    def _started(self, kernel: Kernel) -> None:
        self._starting -= 1
        if self._takers:
            self.kernels.set_role(kernel, USER)
            self._takers.popleft().callback(kernel)
            self._fill()
        elif self.running:
            self._ready.append(kernel)

    def _failed(self, failure: Failure) -> None:
        self._starting -= 1
        # With no kernel left to come, anyone waiting starts a kernel of their own.
        while len(self._takers) > self._starting:
            self._takers.pop().callback(None)
        if failure.check(KernelLimitReached):
            log.info("prespawn: not starting a {name} kernel: {error}", name=self.kernel_name, error=failure.value)
        else:
            log.warn(
                "prespawn: a {name} kernel failed to start: {error}",
                name=self.kernel_name,
                error=failure.value,
                event="prespawn_failed",
            )
