"""How many connections the daemon can hold, stated at start instead of discovered at the limit.

Each channels WebSocket costs one file descriptor, its TCP socket: the
kernel's ZeroMQ sockets are shared by all its connections
(``kgd.kernels.connection``).  A daemon that runs out of descriptors fails
everywhere at once (new kernels, new connections, even ``/healthz``), so kgd
raises its soft ``RLIMIT_NOFILE`` to the hard limit, sizes the ZeroMQ
context to match, and admits only as many WebSockets as the descriptors
left after a reserve can carry; past that an upgrade is refused with 503.
"""

from __future__ import annotations

import errno
import resource
from dataclasses import dataclass
from typing import Callable

#: Descriptors one channels WebSocket holds: its TCP socket.
FDS_PER_CONNECTION = 1
#: Descriptors kept for everything else: listeners, kernels' own sockets, logs, files.
RESERVED_FDS = 256
#: What "unlimited" becomes: the soft limit must be a number.
UNLIMITED_CAP = 1 << 20

GetLimit = Callable[[int], "tuple[int, int]"]
SetLimit = Callable[[int, "tuple[int, int]"], None]


@dataclass(frozen=True)
class OpenFiles:
    """The open-files limit the daemon runs with, and what it allows."""

    before: int
    soft: int
    hard: int

    def connection_capacity(self) -> int:
        """How many channels WebSockets the descriptors can carry beside the reserve."""
        return max(0, (self.soft - RESERVED_FDS) // FDS_PER_CONNECTION)


def raise_open_files_limit(
    get: GetLimit = resource.getrlimit, set_: SetLimit = resource.setrlimit
) -> OpenFiles:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (capped when unlimited); say what it is now."""
    soft, hard = get(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, UNLIMITED_CAP)
    if wanted > soft:
        try:
            set_(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            wanted = soft
    return OpenFiles(soft, max(soft, wanted), hard)


def max_connections(configured: int, limit: OpenFiles) -> int:
    """The WebSockets to admit: ``--max-connections`` (0: as many as the descriptors allow), never more than they allow."""
    capacity = limit.connection_capacity()
    return capacity if configured <= 0 else min(configured, capacity)


def out_of_descriptors(error: BaseException | None) -> bool:
    """True if ``error`` or what caused it is the process or the system running out of descriptors."""
    while error is not None:
        if getattr(error, "errno", None) in (errno.EMFILE, errno.ENFILE):
            return True
        if "Too many open files" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
