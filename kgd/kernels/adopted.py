"""A local kernel process kgd did not spawn: one an earlier daemon left running.

``AdoptedProcess`` is the ``IRunningKernel`` of such a kernel.  Its end is
learnt from ``watch_exit`` (no SIGCHLD reaches a daemon that is not the
parent), and before every signal it checks that the pid still names the
recorded process: a kernel that ended while nobody watched may have left
its pid to another program, which must never be signalled.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

from twisted.internet import defer
from zope.interface import implementer

from kgd.interfaces import IRunningKernel
from kgd.kernels.process_end import ProcessEnd
from kgd.kernels.process_identity import process_start_time
from kgd.kernels.records import LocalProcess

Killpg = Callable[[int, int], None]


@implementer(IRunningKernel)
class AdoptedProcess:
    """A recorded kernel process on this host, leader of its own process group."""

    def __init__(
        self,
        process: LocalProcess,
        connection_info: dict[str, Any],
        ended: defer.Deferred[None],
        *,
        killpg: Killpg = os.killpg,
        start_time_of: Callable[[int], int | None] = process_start_time,
        connection_file: str | None = None,
    ) -> None:
        self.process = process
        self._connection_file = connection_file
        self.connection_info = connection_info
        self.pid: int | None = process.pid
        self._killpg = killpg
        self._start_time_of = start_time_of
        self._end = ProcessEnd()
        # Not our child: its exit code is unknowable.
        ended.addCallback(lambda _: self._on_end())

    def _is_ours(self) -> bool:
        return self._start_time_of(self.process.pid) == self.process.start_time

    def _on_end(self) -> None:
        # Processes the kernel started may outlive it in its group: end them too.
        self._signal_group(signal.SIGKILL)
        self._end.end(None)

    def _signal_group(self, signum: int) -> None:
        try:
            self._killpg(self.process.pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def whenEnded(self) -> defer.Deferred[int | None]:
        return self._end.whenEnded()

    def signal(self, signum: int) -> None:
        if not self._end.ended and self._is_ours():
            self._signal_group(signum)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def shutdown_requested(self, restart: bool) -> None:
        """Nothing more to do for a local process: it ends by itself."""

    def cleanup(self) -> None:
        """Remove the connection file the earlier daemon wrote, if it is still there (a restart writes it again)."""
        if self._connection_file is not None:
            remove_connection_file(self._connection_file)


def remove_connection_file(path: str) -> None:
    """Unlink a kernel's connection file (it holds the key); one that is already gone is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
