"""Records to running kernels and back: what the kernel store keeps, and what adoption checks.

``record_of`` turns a running kernel into the ``KernelRecord`` a store
keeps: a local one with its process's identity, a provisioned one with its
provisioner's own ``get_provisioner_info()``.  ``ProcessAdopter`` turns a
local kernel's record back into an ``IRunningKernel`` (an
``AdoptedProcess``) after checking that the recorded process is still there
and still the same one: recorded on this host, alive, and started at the
recorded time, so a pid that now names another program is refused
(``CannotAdopt``) and never signalled.  ``KernelAdopter`` sends each record
to the adopter of its kind (a provisioned kernel goes back to its
provisioner, ``ProvisionedLauncher.adopt``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from twisted.internet import defer

from jupyter_client.kernelspec import KernelSpec

from kgd.interfaces import IRunningKernel
from kgd.kernels.adopted import AdoptedProcess, Killpg, remove_connection_file
from kgd.kernels.kernel import Kernel
from kgd.kernels.launcher import connection_file_path
from kgd.kernels.process_identity import process_start_time
from kgd.kernels.records import CannotAdopt, KernelRecord, LocalProcess, OnAnotherHost, ProvisionerState

WatchExit = Callable[[int, int], "defer.Deferred[None]"]
AdoptProvisioned = Callable[[KernelRecord, KernelSpec], "defer.Deferred[IRunningKernel]"]


def record_of(kernel: Kernel, role: str) -> KernelRecord | None:
    """The record of ``kernel`` as it runs now; None for a kernel kgd cannot adopt later."""
    running = kernel.running
    if running is None:
        return None
    process = getattr(running, "process", None)
    process = process if isinstance(process, LocalProcess) else None
    state = getattr(running, "provisioner_state", None)
    state = state if isinstance(state, ProvisionerState) else None
    if process is None and state is None:
        return None
    return KernelRecord(
        kernel_id=kernel.kernel_id,
        spec_name=kernel.spec_name,
        connection_info=stored_connection_info(running.connection_info),
        env=dict(kernel.env),
        cwd=kernel.cwd,
        started=kernel.started,
        last_activity=kernel.last_activity.timestamp(),
        role=role,
        restart_count=kernel.supervisor.restart_count,
        process=process,
        provisioner=state,
    )


def stored_connection_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """Connection info as a record stores it: provisioners hand the key over as bytes, JSON wants text."""
    return {name: value.decode("ascii") if isinstance(value, bytes) else value for name, value in info.items()}


class KernelAdopter:
    """Adopts each record the way its kernel runs: a local process, or through its provisioner."""

    def __init__(self, processes: Callable[[KernelRecord], IRunningKernel], provisioned: AdoptProvisioned) -> None:
        self._processes = processes
        self._provisioned = provisioned

    def __call__(self, record: KernelRecord, spec: KernelSpec) -> defer.Deferred[IRunningKernel]:
        """The running kernel ``record`` describes; fails with ``CannotAdopt`` if it is gone or not ours."""
        if record.provisioner is not None:
            return self._provisioned(record, spec)
        return defer.maybeDeferred(self._processes, record)


class ProcessAdopter:
    """Checks a record's process and wraps it as an ``AdoptedProcess``.

    ``runtime_dir`` is where the kernels' connection files are (the store's,
    so they outlive the daemon too): a lost kernel's file is removed at once,
    an adopted one's when it is cleaned up.
    """

    def __init__(
        self,
        host: str,
        watch_exit: WatchExit,
        *,
        runtime_dir: str | None = None,
        start_time_of: Callable[[int], int | None] = process_start_time,
        killpg: Killpg = os.killpg,
    ) -> None:
        self._host = host
        self._watch_exit = watch_exit
        self._runtime_dir = runtime_dir
        self._start_time_of = start_time_of
        self._killpg = killpg

    def __call__(self, record: KernelRecord) -> IRunningKernel:
        """The running kernel ``record`` describes; ``CannotAdopt`` if it is gone or not ours."""
        process = record.process
        if process is None:
            raise CannotAdopt("it is not a local kernel")
        connection_file = None
        if self._runtime_dir is not None:
            connection_file = connection_file_path(self._runtime_dir, record.kernel_id)
        try:
            self._check(process)
        except CannotAdopt:
            if connection_file is not None:
                remove_connection_file(connection_file)
            raise
        info: dict[str, Any] = dict(record.connection_info)
        ended = self._watch_exit(process.pid, process.start_time)
        return AdoptedProcess(
            process, info, ended, killpg=self._killpg, start_time_of=self._start_time_of, connection_file=connection_file
        )

    def _check(self, process: LocalProcess) -> None:
        if process.host != self._host:
            raise OnAnotherHost(f"its process runs on host {process.host!r}, not on {self._host!r}")
        start_time = self._start_time_of(process.pid)
        if start_time is None:
            raise CannotAdopt(f"its process {process.pid} is gone")
        if start_time != process.start_time:
            raise CannotAdopt(f"pid {process.pid} now belongs to another process")
