"""Knowing when a process that is not kgd's child ends.

An adopted kernel was spawned by an earlier daemon, so no SIGCHLD tells this
one that it ended.  Linux's ``pidfd_open`` gives a descriptor that becomes
readable when the process exits; it is registered with the reactor like a
socket.  Where pidfds are missing (old kernels, other systems) the process
is polled instead.  Either way the watch checks the process's start time,
so a pid reused after the kernel ended counts as the kernel having ended.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorFDSet, IReactorTime, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from kgd.kernels.process_identity import process_start_time

StartTimeOf = Callable[[int], "int | None"]


@implementer(IReadDescriptor)
class _PidfdReader:
    """A pidfd in the reactor: readable once the process has exited."""

    def __init__(self, reactor: IReactorFDSet, fd: int, exited: Callable[[], None]) -> None:
        self._reactor = reactor
        self._fd = fd
        self._exited = exited

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "pidfd"

    def doRead(self) -> None:
        self._reactor.removeReader(self)
        os.close(self._fd)
        self._fd = -1
        self._exited()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor is shutting down: nothing to report."""


def watch_exit(
    reactor: Any,
    pid: int,
    start_time: int,
    *,
    poll_interval: float = 1.0,
    start_time_of: StartTimeOf = process_start_time,
    pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None),
) -> defer.Deferred[None]:
    """Fire once process ``pid`` (started at ``start_time``) has ended.

    Fires at once if it already has, or if ``pid`` now names another process.
    """
    ended: defer.Deferred[None] = defer.Deferred()

    def still_ours() -> bool:
        return start_time_of(pid) == start_time

    def exited() -> None:
        if not ended.called:
            ended.callback(None)

    if not still_ours():
        exited()
        return ended
    if pidfd_open is not None and IReactorFDSet.providedBy(reactor):
        try:
            fd = pidfd_open(pid)
        except OSError:
            fd = -1
        if fd >= 0:
            # The pid may have been reused between the check above and the open.
            if still_ours():
                reactor.addReader(_PidfdReader(reactor, fd, exited))
            else:
                os.close(fd)
                exited()
            return ended
    _poll(reactor, still_ours, exited, poll_interval)
    return ended


def _poll(clock: IReactorTime, still_ours: Callable[[], bool], exited: Callable[[], None], interval: float) -> None:
    def check() -> None:
        if not still_ours():
            loop.stop()
            exited()

    loop = task.LoopingCall(check)
    loop.clock = clock
    loop.start(interval, now=False)
