"""What a gateway process holds open, read from /proc: files, client sockets, ZeroMQ sockets.

Why: a gateway's cost per kernel and per connection is not only memory. Each
ZeroMQ socket it opens holds a TCP connection to a kernel and an eventfd (the
socket's mailbox), each WebSocket a TCP connection, and RLIMIT_NOFILE bounds
them all. The kinds are told apart by the targets of /proc/PID/fd links and,
for sockets, by /proc/PID/net/tcp{,6}:

- ``client_tcp``: TCP connections on the gateway's listening port (HTTP and WebSocket clients);
- ``kernel_tcp``: the other TCP connections, those the gateway opened: one per
  connected ZeroMQ socket (it has no other outgoing connections in these benchmarks);
- ``eventfd``: one per ZeroMQ socket, plus a few per ZeroMQ context;
- ``pipe``: mostly the kernels' stdout/stderr; ``fds``: everything.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

_TCP_LISTEN = "0A"


def _tcp_sockets(pid: int) -> dict[str, tuple[int, str]]:
    """socket inode -> (local port, state) for the TCP sockets in ``pid``'s network namespace."""
    sockets: dict[str, tuple[int, str]] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            sockets[fields[9]] = (int(fields[1].rsplit(":", 1)[1], 16), fields[3])
    return sockets


def open_files(pid: int, listen_port: int) -> Counter[str]:
    """Counts of ``pid``'s open files by kind (see the module docstring)."""
    counts: Counter[str] = Counter()
    targets = []
    for entry in os.scandir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(entry.path))
        except OSError:  # closed meanwhile
            continue
    tcp = _tcp_sockets(pid)
    for target in targets:
        counts["fds"] += 1
        if target.startswith("socket:["):
            port, state = tcp.get(target[8:-1], (None, None))
            if port is None or state == _TCP_LISTEN:
                counts["other_sockets"] += 1
            else:
                counts["client_tcp" if port == listen_port else "kernel_tcp"] += 1
        elif target == "anon_inode:[eventfd]":
            counts["eventfd"] += 1
        elif target.startswith("pipe:["):
            counts["pipe"] += 1
    return counts
