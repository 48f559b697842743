"""Tests for kgd.personalities.notebook_http.kernel_pool: hand-out, queueing, timeouts, replacement.

Members are fakes and time is a ``Clock``: these are the pool's rules, not
kernels (test_routes covers the pool on real kernels).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kgd.personalities.notebook_http.kernel_pool import KernelPool, PoolUnavailable, RequestTimeout


class FakeMember:
    """A pool member that records what the pool asks of it."""

    def __init__(self, kernel_id: str) -> None:
        self.kernel_id = kernel_id
        self.lost: defer.Deferred[str] = defer.Deferred()
        self.interrupts = 0
        self.retired: list[str] = []
        self.usable = True

    def interrupt(self) -> None:
        self.interrupts += 1

    def retire(self, reason: str) -> None:
        """Idempotent, like KernelExecutor.retire: the first reason is the one kept."""
        if not self.retired:
            self.retired.append(reason)
        self.close(reason)

    def close(self, reason: str = "closed") -> None:
        if not self.lost.called:
            self.lost.callback(reason)


class Factory:
    """Starts members on demand; the test decides when each start finishes."""

    def __init__(self) -> None:
        self.pending: list[defer.Deferred[FakeMember]] = []
        self.made = 0

    def __call__(self) -> defer.Deferred[FakeMember]:
        started: defer.Deferred[FakeMember] = defer.Deferred()
        self.pending.append(started)
        return started

    def finish_all(self) -> list[FakeMember]:
        members = []
        pending, self.pending = self.pending, []
        for started in pending:
            self.made += 1
            member = FakeMember(f"k{self.made}")
            members.append(member)
            started.callback(member)
        return members

    def fail_all(self, reason: str) -> None:
        pending, self.pending = self.pending, []
        for started in pending:
            started.errback(RuntimeError(reason))


def make_pool(size: int, **kwargs: Any) -> tuple[KernelPool[FakeMember], Factory, Clock]:
    clock, factory = Clock(), Factory()
    pool: KernelPool[FakeMember] = KernelPool(size, factory, clock, **kwargs)
    pool.startService()
    return pool, factory, clock


class HandOutTests(SynchronousTestCase):
    """Which member a request gets, and when."""

    def test_starts_size_members_at_least_one(self) -> None:
        """The pool starts `size` members; a size below one is one."""
        pool, factory, _ = make_pool(3)
        self.assertEqual(len(factory.pending), 3)
        self.assertEqual(len(make_pool(0)[1].pending), 1)
        self.assertNoResult(pool.filled())
        factory.finish_all()
        self.successResultOf(pool.filled())

    def test_round_robin(self) -> None:
        """Sequential requests cycle over the members (first free out, released to the back)."""
        pool, factory, _ = make_pool(3)
        factory.finish_all()
        seen = []
        for _ in range(6):
            member = self.successResultOf(pool.acquire())
            seen.append(member.kernel_id)
            pool.release(member)
        self.assertEqual(seen, ["k1", "k2", "k3", "k1", "k2", "k3"])

    def test_queue_is_fifo(self) -> None:
        """With every member busy, requests are served in arrival order."""
        pool, factory, _ = make_pool(1)
        factory.finish_all()
        busy = self.successResultOf(pool.acquire())
        first, second = pool.acquire(), pool.acquire()
        self.assertNoResult(first)
        pool.release(busy)
        self.assertIs(self.successResultOf(first), busy)
        self.assertNoResult(second)
        pool.release(busy)
        self.assertIs(self.successResultOf(second), busy)

    def test_waits_for_a_starting_member(self) -> None:
        """A request that arrives before any kernel is ready gets the first one."""
        pool, factory, _ = make_pool(1)
        waiting = pool.acquire()
        self.assertNoResult(waiting)
        (member,) = factory.finish_all()
        self.assertIs(self.successResultOf(waiting), member)

    def test_cancel_leaves_the_queue(self) -> None:
        """A request whose client went away no longer holds a place in the queue."""
        pool, factory, _ = make_pool(1)
        factory.finish_all()
        busy = self.successResultOf(pool.acquire())
        gone, next_one = pool.acquire(), pool.acquire()
        gone.cancel()
        self.failureResultOf(gone, defer.CancelledError)
        self.assertEqual(pool.waiting, 1)
        pool.release(busy)
        self.assertIs(self.successResultOf(next_one), busy)


class FailureTests(SynchronousTestCase):
    """Start failures, lost kernels and stopping never leave a request waiting."""

    def test_failed_start_fails_waiters_and_new_requests(self) -> None:
        """When no member can start, queued and new requests fail at once with the reason."""
        pool, factory, _ = make_pool(2)
        waiting = pool.acquire()
        factory.fail_all("seed cell 1 failed: Error ModuleNotFoundError")
        failure = self.failureResultOf(waiting, PoolUnavailable)
        self.assertIn("ModuleNotFoundError", str(failure.value))
        self.failureResultOf(pool.acquire(), PoolUnavailable)

    def test_lost_member_is_replaced(self) -> None:
        """A member whose kernel died leaves the pool and a new one is started."""
        pool, factory, _ = make_pool(1)
        (member,) = factory.finish_all()
        member.close("kernel k1 died")
        self.assertEqual(member.retired, ["kernel k1 died"])
        self.assertEqual(pool.members, [])
        waiting = pool.acquire()
        self.assertEqual(len(factory.pending), 1)
        (replacement,) = factory.finish_all()
        self.assertIs(self.successResultOf(waiting), replacement)
        pool.release(member)  # a late release of the dead member is ignored
        self.assertEqual(pool.members, [replacement])

    def test_member_gone_while_idle_is_skipped(self) -> None:
        """A free member whose kernel went away is replaced, and the request takes the next one."""
        pool, factory, _ = make_pool(2)
        first, second = factory.finish_all()
        first.usable = False
        self.assertIs(self.successResultOf(pool.acquire()), second)
        self.assertEqual(first.retired, ["kernel k1 is gone"])
        self.assertEqual(len(factory.pending), 1)

    def test_stop_fails_waiters_and_closes_members(self) -> None:
        """Stopping fails queued requests with PoolUnavailable and detaches every member."""
        pool, factory, _ = make_pool(1)
        (member,) = factory.finish_all()
        self.successResultOf(pool.acquire())
        waiting = pool.acquire()
        pool.stopService()
        self.failureResultOf(waiting, PoolUnavailable)
        self.assertTrue(member.lost.called)
        self.failureResultOf(pool.acquire(), PoolUnavailable)
        self.assertEqual(factory.pending, [])

    def test_member_started_after_stop_is_retired(self) -> None:
        """A kernel that finishes starting after the stop is shut down, not pooled."""
        pool, factory, _ = make_pool(1)
        pool.stopService()
        (member,) = factory.finish_all()
        self.assertEqual(member.retired, ["the gateway is shutting down"])


class ServeTests(SynchronousTestCase):
    """serve(): run work on a member, with a timeout, and release it when the work is over."""

    def test_result_and_release(self) -> None:
        """The work's result is the answer, and the member is free again afterwards."""
        pool, factory, _ = make_pool(1)
        (member,) = factory.finish_all()
        work: defer.Deferred[str] = defer.Deferred()
        answer = pool.serve(lambda m: work)
        self.assertNoResult(pool.acquire().addCallback(pool.release))
        work.callback("done")
        self.assertEqual(self.successResultOf(answer), "done")

    def test_timeout_answers_interrupts_then_releases(self) -> None:
        """Past the timeout the answer is RequestTimeout and the kernel is interrupted;
        the member is released only when the work really ends."""
        pool, factory, clock = make_pool(1)
        (member,) = factory.finish_all()
        work: defer.Deferred[str] = defer.Deferred()
        answer = pool.serve(lambda m: work, timeout=5)
        clock.advance(5)
        self.failureResultOf(answer, RequestTimeout)
        self.assertEqual(member.interrupts, 1)
        queued = pool.acquire()
        self.assertNoResult(queued)
        work.callback("late")
        self.assertIs(self.successResultOf(queued), member)
        clock.advance(60)
        self.assertEqual(member.retired, [])

    def test_stuck_after_interrupt_is_retired(self) -> None:
        """A kernel still busy `interrupt_grace` seconds after the interrupt is replaced."""
        pool, factory, clock = make_pool(1, interrupt_grace=2)
        (member,) = factory.finish_all()
        pool.serve(lambda m: defer.Deferred(), timeout=1).addErrback(lambda f: None)
        clock.advance(1)
        clock.advance(2)
        self.assertIn("after an interrupt", member.retired[0])
        self.assertEqual(pool.members, [])
        self.assertEqual(len(factory.pending), 1)

    def test_cancel_while_running_keeps_member_busy(self) -> None:
        """Cancelling a running request drops its answer, but the kernel stays busy until done."""
        pool, factory, _ = make_pool(1)
        (member,) = factory.finish_all()
        work: defer.Deferred[str] = defer.Deferred()
        answer = pool.serve(lambda m: work)
        answer.cancel()
        self.failureResultOf(answer, defer.CancelledError)
        queued = pool.acquire()
        self.assertNoResult(queued)
        work.callback("ignored")
        self.assertIs(self.successResultOf(queued), member)

    def test_holds(self) -> None:
        """holds() recognises the pool's kernels by id."""
        pool, factory, _ = make_pool(1)
        (member,) = factory.finish_all()
        self.assertTrue(pool.holds(member))
        self.assertFalse(pool.holds(FakeMember("other")))
