"""When kgd is ready to serve: named conditions that must all come true.

systemd's ``READY=1`` and the ``/readyz`` probe ask the same question, so
they share one ``Readiness``.  A part of the daemon that needs time before
kgd should get traffic names its condition with ``expect(name)`` and says
``done(name)`` later, or hands over a Deferred with ``track(name, d)``: the
listeners (``listening``) and the prespawn pool (``prespawn``) do.  Nothing
here does I/O; ``when_ready()`` fires once no condition is pending.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer


class Readiness:
    """A set of pending conditions and the Deferreds waiting for none to remain."""

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._met: set[str] = set()
        self._waiters: list[defer.Deferred[None]] = []

    def expect(self, name: str) -> None:
        """Make ``name`` a condition of readiness until ``done(name)``."""
        if name not in self._met:
            self._pending.add(name)

    def done(self, name: str) -> None:
        """Condition ``name`` holds; wake the waiters if it was the last one."""
        self._pending.discard(name)
        self._met.add(name)
        if not self._pending:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def lost(self, name: str) -> None:
        """Condition ``name`` no longer holds (the kernel store went away): pending again until ``done(name)``."""
        self._met.discard(name)
        self._pending.add(name)

    def track(self, name: str, condition: defer.Deferred[Any]) -> defer.Deferred[Any]:
        """Expect ``name`` until ``condition`` succeeds; a failure leaves it pending."""
        self.expect(name)

        def met(result: Any) -> Any:
            self.done(name)
            return result

        return condition.addCallback(met)

    @property
    def ready(self) -> bool:
        """True when no condition is pending."""
        return not self._pending

    def pending(self) -> list[str]:
        """The conditions still awaited, sorted."""
        return sorted(self._pending)

    def met(self) -> list[str]:
        """The conditions that came true, sorted."""
        return sorted(self._met)

    def when_ready(self) -> defer.Deferred[None]:
        """A Deferred that fires once no condition is pending (at once if none is)."""
        if not self._pending:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)
        return waiter
