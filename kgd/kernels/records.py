"""What kgd records about a kernel so that another daemon can take it over.

A ``KernelRecord`` holds everything needed to talk to a kernel again and to
supervise it: its connection info (ports and HMAC key), for a local kernel
the process's identity (pid, process group and start time, so that a reused
pid is never signalled), for a provisioned kernel the provisioner's own
``get_provisioner_info()``, and what a restart needs (environment, working
directory).  Records are versioned JSON; ``decode_record`` refuses anything
it does not fully understand with ``BadRecord``, so a store can set the
record aside instead of adopting a kernel it would misread.

Pure: no I/O, no clock.  Stores (``kgd.interfaces.IKernelStore``) persist
the bytes of ``encode_record``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

#: The version this module writes; records of any other version are refused.
RECORD_VERSION = 1

#: Who a kernel belongs to: a REST user, the prespawn pool, or notebook-http's pool.
ROLES = ("user", "prespawn", "notebook-http")

_CONNECTION_KEYS = {
    "transport": str,
    "ip": str,
    "shell_port": int,
    "iopub_port": int,
    "stdin_port": int,
    "control_port": int,
    "hb_port": int,
    "key": str,
    "signature_scheme": str,
}


class BadRecord(ValueError):
    """Bytes that are not a kernel record this version of kgd can adopt."""


class StoreUnavailable(Exception):
    """The kernel store cannot be reached (Redis down, directory unreadable)."""


class CannotAdopt(Exception):
    """The recorded kernel cannot be taken over; the message says why."""


class OnAnotherHost(CannotAdopt):
    """The recorded kernel is a local process of another host: only a replica there can take it over."""


@dataclass(frozen=True)
class LocalProcess:
    """A kernel process on one host, identified beyond its pid.

    ``start_time`` is the process's start time in clock ticks since boot
    (field 22 of ``/proc/<pid>/stat``): a pid reused by another process has
    another start time.  ``host`` is the host name of the daemon that
    spawned it: only a daemon on that host can signal or watch it.
    """

    pid: int
    pgid: int
    start_time: int
    host: str


@dataclass(frozen=True)
class ProvisionerState:
    """A provisioned kernel as its provisioner describes it.

    ``info`` is what the provisioner's ``get_provisioner_info()`` returned,
    minus the connection info (the record holds that once, key included);
    ``load_provisioner_info()`` gets it back with the connection info put in
    again.  ``name`` is the provisioner that wrote it: a kernelspec that now
    names another one cannot read it.
    """

    name: str
    info: Mapping[str, Any]


@dataclass(frozen=True)
class KernelRecord:
    """One kernel, as stored.  Timestamps are seconds since the epoch."""

    kernel_id: str
    spec_name: str
    connection_info: Mapping[str, Any]
    env: Mapping[str, str]
    cwd: str
    started: float
    last_activity: float
    role: str = "user"
    restart_count: int = 0
    process: LocalProcess | None = None
    provisioner: ProvisionerState | None = None
    version: int = field(default=RECORD_VERSION)

    def with_changes(self, **changes: Any) -> "KernelRecord":
        """A copy with some fields changed (last activity, pid after a restart, ...)."""
        return replace(self, **changes)


def encode_record(record: KernelRecord) -> bytes:
    """The record as compact, key-sorted UTF-8 JSON."""
    data: dict[str, Any] = {
        "version": record.version,
        "kernel_id": record.kernel_id,
        "spec_name": record.spec_name,
        "connection_info": dict(record.connection_info),
        "env": dict(record.env),
        "cwd": record.cwd,
        "started": record.started,
        "last_activity": record.last_activity,
        "role": record.role,
        "restart_count": record.restart_count,
        "process": None,
        "provisioner": None,
    }
    if record.provisioner is not None:
        data["provisioner"] = {"name": record.provisioner.name, "info": dict(record.provisioner.info)}
    if record.process is not None:
        p = record.process
        data["process"] = {"pid": p.pid, "pgid": p.pgid, "start_time": p.start_time, "host": p.host}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode_record(raw: bytes) -> KernelRecord:
    """Parse and check a stored record; ``BadRecord`` says what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise BadRecord(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRecord("not a JSON object")
    version = data.get("version")
    if version != RECORD_VERSION:
        raise BadRecord(f"unknown record version {version!r} (this kgd reads version {RECORD_VERSION})")
    try:
        return KernelRecord(
            kernel_id=_typed(data, "kernel_id", str),
            spec_name=_typed(data, "spec_name", str),
            connection_info=_connection_info(_typed(data, "connection_info", dict)),
            env=_string_map(_typed(data, "env", dict), "env"),
            cwd=_typed(data, "cwd", str),
            started=float(_typed(data, "started", (int, float))),
            last_activity=float(_typed(data, "last_activity", (int, float))),
            role=_role(_typed(data, "role", str)),
            restart_count=_typed(data, "restart_count", int),
            process=_process(data.get("process")),
            provisioner=_provisioner(data.get("provisioner")),
        )
    except KeyError as missing:
        raise BadRecord(f"missing field {missing}") from None


def _typed(data: Mapping[str, Any], name: str, kind: Any) -> Any:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BadRecord(f"field {name!r} has the wrong type")
    return value


def _connection_info(info: dict[str, Any]) -> dict[str, Any]:
    for name, kind in _CONNECTION_KEYS.items():
        _typed(info, name, kind)
    return info


def _string_map(value: dict[str, Any], name: str) -> dict[str, str]:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadRecord(f"field {name!r} must map strings to strings")
    return value


def _provisioner(value: Any) -> ProvisionerState | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRecord("field 'provisioner' must be an object or null")
    return ProvisionerState(name=_typed(value, "name", str), info=_typed(value, "info", dict))


def _role(value: str) -> str:
    if value not in ROLES:
        raise BadRecord(f"unknown role {value!r}")
    return value


def _process(value: Any) -> LocalProcess | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRecord("field 'process' must be an object or null")
    return LocalProcess(
        pid=_typed(value, "pid", int),
        pgid=_typed(value, "pgid", int),
        start_time=_typed(value, "start_time", int),
        host=_typed(value, "host", str),
    )
