"""The ``whenEnded`` of an ``IRunningKernel``: one exit, told to every waiter.

Launchers' running kernels learn of the end in different ways (a process
protocol, a provisioner's poll); each hands it to a ``ProcessEnd``, which
remembers the exit code and fires every waiter once, including waiters that
ask after the end.
"""

from __future__ import annotations

from twisted.internet import defer


class ProcessEnd:
    """Waiters for one kernel's end, and its exit code once it ended."""

    def __init__(self) -> None:
        self.ended = False
        self.code: int | None = None
        self._waiters: list[defer.Deferred[int | None]] = []

    def whenEnded(self) -> defer.Deferred[int | None]:
        """A Deferred firing with the exit code (None if killed by a signal) once ended."""
        if self.ended:
            return defer.succeed(self.code)
        waiter: defer.Deferred[int | None] = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def end(self, code: int | None) -> None:
        """Record the end and fire the waiters; later calls change nothing."""
        if self.ended:
            return
        self.ended = True
        self.code = code
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:  # a waiter may have timed out already
                waiter.callback(code)
