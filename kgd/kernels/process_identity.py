"""Which process a pid names: its start time, so that a reused pid is never mistaken for a kernel.

A pid alone does not identify a process once the daemon that spawned it is
gone: the kernel may have ended and the pid been given to something else.
Linux records each process's start time (clock ticks since boot, field 22
of ``/proc/<pid>/stat``); the pair (pid, start time) is unique for as long
as the machine runs.
"""

from __future__ import annotations

import socket


def parse_stat(stat: bytes) -> tuple[str, int]:
    """The state letter and start time in a ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may itself contain
    spaces and parentheses, so the fields are counted from its last ``)``.
    """
    fields = stat.rsplit(b")", 1)[1].split()
    # fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    return fields[0].decode("ascii"), int(fields[19])


def process_start_time(pid: int, proc: str = "/proc") -> int | None:
    """The start time of process ``pid``, or None if there is no such (living) process."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            state, start_time = parse_stat(f.read())
    except (OSError, IndexError, ValueError):
        return None
    return None if state in ("Z", "X") else start_time


def this_host() -> str:
    """The name a record gives to the host whose daemon may signal its processes."""
    return socket.gethostname()
