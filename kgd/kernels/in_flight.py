"""One operation per key at a time, shared by everyone who asks for it meanwhile.

Mirroring a kernel, taking one over, reconciling with the store: two
requests arriving together must not do the work twice (two mirrors of one
kernel, two adoptions of one process).  The first caller starts the
operation; later ones wait for the same result.  Each caller gets a Deferred
of its own, so cancelling it (a client that left) abandons that wait, never
the operation.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Hashable, TypeVar

from twisted.internet import defer

T = TypeVar("T")


class InFlight(Generic[T]):
    """Operations under way, by key."""

    def __init__(self) -> None:
        self._waiters: dict[Hashable, list[defer.Deferred[T]]] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._waiters

    def run(self, key: Hashable, start: Callable[[], defer.Deferred[T]]) -> defer.Deferred[T]:
        """The result of ``start()``, or of the operation already under way for ``key``."""
        if key in self._waiters:
            return self.wait(key)
        waiter: defer.Deferred[T] = defer.Deferred()
        waiters = self._waiters[key] = [waiter]

        def settle(result: Any) -> None:
            del self._waiters[key]
            for each in waiters:
                if not each.called:  # a caller that left cancelled its own
                    each.callback(result)  # a Failure errbacks it

        start().addBoth(settle)
        return waiter

    def wait(self, key: Hashable) -> defer.Deferred[T]:
        """The result of the operation under way for ``key`` (``KeyError`` if there is none)."""
        waiter: defer.Deferred[T] = defer.Deferred()
        self._waiters[key].append(waiter)
        return waiter
