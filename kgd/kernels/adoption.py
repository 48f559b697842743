"""Records to running kernels and back: what the kernel store keeps, and what adoption checks.

``record_of`` turns a running local kernel into the ``KernelRecord`` a store
keeps.  ``ProcessAdopter`` turns a record back into an ``IRunningKernel``
(an ``AdoptedProcess``) after checking that the recorded process is still
there and still the same one: recorded on this host, alive, and started at
the recorded time, so a pid that now names another program is refused
(``CannotAdopt``) and never signalled.

Provisioned kernels are not recorded yet: their provisioner's own
``get_provisioner_info()`` is the seam for that, and the next step (several
replicas) needs it.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet import defer

from kgd.interfaces import IRunningKernel
from kgd.kernels.adopted import AdoptedProcess, Killpg
from kgd.kernels.kernel import Kernel
from kgd.kernels.process_identity import process_start_time
from kgd.kernels.records import KernelRecord, LocalProcess

WatchExit = Callable[[int, int], "defer.Deferred[None]"]


class CannotAdopt(Exception):
    """The recorded kernel cannot be taken over; the message says why."""


def record_of(kernel: Kernel, role: str) -> KernelRecord | None:
    """The record of ``kernel`` as it runs now; None for a kernel kgd cannot adopt later."""
    running = kernel.running
    process = getattr(running, "process", None)
    if running is None or not isinstance(process, LocalProcess):
        return None
    return KernelRecord(
        kernel_id=kernel.kernel_id,
        spec_name=kernel.spec_name,
        connection_info=dict(running.connection_info),
        env=dict(kernel.env),
        cwd=kernel.cwd,
        started=kernel.started,
        last_activity=kernel.last_activity.timestamp(),
        role=role,
        process=process,
    )


class ProcessAdopter:
    """Checks a record's process and wraps it as an ``AdoptedProcess``."""

    def __init__(
        self,
        host: str,
        watch_exit: WatchExit,
        *,
        start_time_of: Callable[[int], int | None] = process_start_time,
        killpg: Killpg = os.killpg,
    ) -> None:
        self._host = host
        self._watch_exit = watch_exit
        self._start_time_of = start_time_of
        self._killpg = killpg

    def __call__(self, record: KernelRecord) -> IRunningKernel:
        """The running kernel ``record`` describes; ``CannotAdopt`` if it is gone or not ours."""
        process = record.process
        if process is None:
            raise CannotAdopt("it is not a local kernel")
        if process.host != self._host:
            raise CannotAdopt(f"its process runs on host {process.host!r}, not on {self._host!r}")
        start_time = self._start_time_of(process.pid)
        if start_time is None:
            raise CannotAdopt(f"its process {process.pid} is gone")
        if start_time != process.start_time:
            raise CannotAdopt(f"pid {process.pid} now belongs to another process")
        info: dict[str, Any] = dict(record.connection_info)
        ended = self._watch_exit(process.pid, process.start_time)
        return AdoptedProcess(process, info, ended, killpg=self._killpg, start_time_of=self._start_time_of)
