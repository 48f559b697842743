"""Lifecycle operations that do not depend on who waits for them.

twisted.web (through Klein) cancels the Deferred a route returned when the
client disconnects, and cancellation travels down the chain of Deferreds the
route is waiting on.  A kernel start, restart or shutdown cut there would
leave a process half-launched or half-stopped and owned by nobody.  So a
caller gets ``shielded(operation)``: cancelling it abandons that caller's
wait, and the operation goes on to its end (and its failure, if nobody is
left to hear it, is logged instead of lost).
"""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

T = TypeVar("T")


def shielded(operation: defer.Deferred[T]) -> defer.Deferred[T]:
    """A Deferred that fires as ``operation`` does; cancelling it leaves ``operation`` running."""
    waiter: defer.Deferred[T] = defer.Deferred()

    def settle(result: Any) -> None:
        if not waiter.called:
            waiter.callback(result)  # a Failure errbacks it
        elif isinstance(result, Failure) and not result.check(defer.CancelledError):
            log.failure("a kernel operation nobody waits for any more failed", result)

    operation.addBoth(settle)
    return waiter
