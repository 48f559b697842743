"""The notebook-http kernel pool: prespawned, seeded kernels, one request each.

``KernelPool`` is a Service.  On start it asks its ``start_member`` factory
for ``size`` members (a member is a started, seeded kernel wrapped in a
``KernelExecutor``).  Requests take a member with :meth:`acquire` and give
it back with :meth:`release`; when every member is busy, requests wait in
one FIFO queue and are served in arrival order.  Free members are handed
out first-free-first and returned to the end, so sequential requests go
round-robin over the kernels, as in the reference gateway.

:meth:`serve` wraps acquire/run/release for one request and adds the
guarantees the reference lacked: a request whose client went away leaves
the queue; a request running past ``timeout`` is answered at once with
``RequestTimeout`` while its kernel is interrupted (and replaced if it does
not come back within ``interrupt_grace``); a member whose kernel dies is
dropped and replaced by a fresh seeded one.  When no member is alive and
none is starting (the seed cells failed, say), requests fail at once with
``PoolUnavailable`` instead of waiting forever; so does everything queued
when the daemon stops.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Generic, Protocol, TypeVar

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

T = TypeVar("T")


class PoolMember(Protocol):
    """What the pool needs of a member (``KernelExecutor`` provides it)."""

    kernel_id: str
    lost: defer.Deferred[str]

    @property
    def usable(self) -> bool: ...

    def interrupt(self) -> None: ...

    def retire(self, reason: str) -> None: ...

    def close(self) -> None: ...


M = TypeVar("M", bound=PoolMember)


class PoolUnavailable(Exception):
    """No kernel can serve requests: none could be started, or the daemon is stopping."""


class RequestTimeout(Exception):
    """The request ran longer than the pool's timeout; its kernel was interrupted."""


class KernelPool(Service, Generic[M]):
    """``size`` members from ``start_member``, handed out one request at a time."""

    name = "notebook-http-pool"

    def __init__(
        self,
        size: int,
        start_member: Callable[[], defer.Deferred[M]],
        clock: IReactorTime,
        *,
        interrupt_grace: float = 5.0,
    ) -> None:
        self.size = max(1, size)
        self._start_member = start_member
        self._clock = clock
        self._interrupt_grace = interrupt_grace
        self._members: list[M] = []
        self._free: deque[M] = deque()
        self._waiters: deque[defer.Deferred[M]] = deque()
        self._starting = 0
        self._last_failure = ""
        self._filled: list[defer.Deferred[None]] | None = []

    # -- state -------------------------------------------------------------------

    @property
    def members(self) -> list[M]:
        """Live members, in the order they joined."""
        return list(self._members)

    @property
    def waiting(self) -> int:
        """Requests queued for a member."""
        return len(self._waiters)

    def holds(self, kernel: Any) -> bool:
        """True if ``kernel`` (anything with a ``kernel_id``) is one of the pool's."""
        return any(member.kernel_id == kernel.kernel_id for member in self._members)

    def filled(self) -> defer.Deferred[None]:
        """Fires once ``size`` members have joined (never, if they cannot start)."""
        if self._filled is None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._filled.append(waiter)
        return waiter

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for _ in range(self.size):
            self._fill()

    def stopService(self) -> None:
        """Fail every queued request and detach from every kernel, without waiting.

        The kernels themselves are shut down by the kernels service, which
        stops after this one.
        """
        super().stopService()
        self._fail_waiters(PoolUnavailable("The gateway is shutting down"))
        for member in list(self._members):
            member.close()

    def _fill(self) -> None:
        self._starting += 1
        defer.maybeDeferred(self._start_member).addCallbacks(self._started, self._start_failed)

    def _started(self, member: M) -> None:
        self._starting -= 1
        if not self.running:
            member.retire("the gateway is shutting down")
            return
        self._members.append(member)
        member.lost.addCallback(lambda reason: self._lost(member, reason))
        log.info("notebook-http: kernel {kernel_id} joined the pool", kernel_id=member.kernel_id)
        if self._filled is not None and len(self._members) >= self.size:
            waiters, self._filled = self._filled, None
            for waiter in waiters:
                waiter.callback(None)
        self._hand_out(member)

    def _start_failed(self, failure: Failure) -> None:
        self._starting -= 1
        if not self.running:
            return
        self._last_failure = str(failure.value)
        log.error(
            "notebook-http: a pool kernel could not be started and seeded: {error}",
            error=self._last_failure,
            event="pool_kernel_failed",
        )
        if not self._members and not self._starting:
            self._fail_waiters(self._unavailable())

    def _lost(self, member: M, reason: str) -> None:
        if member not in self._members:
            return
        self._members.remove(member)
        if member in self._free:
            self._free.remove(member)
        member.retire(reason)
        if self.running:
            log.warn(
                "notebook-http: replacing kernel {kernel_id}: {reason}",
                kernel_id=member.kernel_id,
                reason=reason,
                event="pool_kernel_replaced",
            )
            self._fill()

    def _unavailable(self) -> PoolUnavailable:
        return PoolUnavailable(f"No kernel is available to run the request: {self._last_failure}")

    def _fail_waiters(self, error: Exception) -> None:
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.errback(error)

    # -- hand-out ----------------------------------------------------------------

    def acquire(self) -> defer.Deferred[M]:
        """A free member, now or when one is released (FIFO); cancel to leave the queue."""
        if not self.running:
            return defer.fail(PoolUnavailable("The gateway is shutting down"))
        while self._free:
            member = self._free.popleft()
            if member.usable:
                return defer.succeed(member)
            # Its kernel went away while it was idle (culled, deleted): replace it.
            member.retire(f"kernel {member.kernel_id} is gone")
        if not self._members and not self._starting:
            return defer.fail(self._unavailable())
        waiter: defer.Deferred[M] = defer.Deferred(self._leave_queue)
        self._waiters.append(waiter)
        return waiter

    def _leave_queue(self, waiter: defer.Deferred[M]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def release(self, member: M) -> None:
        """Give a member back; a member that was dropped meanwhile is ignored."""
        if member in self._members and member not in self._free:
            self._hand_out(member)

    def _hand_out(self, member: M) -> None:
        if self._waiters:
            self._waiters.popleft().callback(member)
        else:
            self._free.append(member)

    def serve(self, work: Callable[[M], defer.Deferred[T]], timeout: float = 0.0) -> defer.Deferred[T]:
        """Run ``work`` on a member and release it when the work is over.

        The result fires with the work's result, or ``RequestTimeout`` after
        ``timeout`` seconds (0: none).  Cancelling it while queued leaves the
        queue; once the work runs, cancelling only drops its result: the
        member stays busy until the kernel has finished.
        """
        acquiring = self.acquire()
        answer: defer.Deferred[T] = defer.Deferred(lambda _: acquiring.cancel())

        def settle(result: Any) -> None:
            if not answer.called:
                if isinstance(result, Failure):
                    answer.errback(result)
                else:
                    answer.callback(result)

        timers: list[IDelayedCall] = []

        def run(member: M) -> None:
            running = defer.maybeDeferred(work, member)
            if timeout > 0:
                timers.append(self._clock.callLater(timeout, timed_out, member, running))

            def finished(result: Any) -> None:
                for timer in timers:
                    if timer.active():
                        timer.cancel()
                self.release(member)
                settle(result)

            running.addBoth(finished)

        def timed_out(member: M, running: defer.Deferred[T]) -> None:
            settle(Failure(RequestTimeout(f"The request ran longer than {timeout:g} s; its kernel was interrupted")))
            log.warn(
                "notebook-http: request timed out after {timeout} s; interrupting kernel {kernel_id}",
                timeout=timeout,
                kernel_id=member.kernel_id,
            )
            member.interrupt()

            def still_running() -> None:
                if not running.called:
                    member.retire(f"still busy {self._interrupt_grace:g} s after an interrupt")

            timers.append(self._clock.callLater(self._interrupt_grace, still_running))

        acquiring.addCallbacks(run, settle)
        return answer
