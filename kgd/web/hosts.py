"""Which ``Host`` names a request may carry: kgd's defence against DNS rebinding.

A page on ``evil.example`` can make its name resolve to 127.0.0.1 and then
call a gateway on the user's own machine as "same origin": the browser sends
``Host: evil.example`` and a matching ``Origin``.  So a request that arrives
on a loopback address must name a loopback host (``localhost``, any
127.0.0.0/8 address, ``[::1]``, with any port) or one of the operator's
``--allow-host`` names; anything else is refused.  This is Jupyter Server's
rule (``local_hostnames`` without ``allow_remote_access``).

The decision is made per connection, on the address the client reached:
a request that came in over a non-loopback address (a daemon bound to a
public or wildcard address, reached from elsewhere) may name any host, as
Jupyter Server allows when bound beyond loopback, because it is not what a
rebinding attack produces.  A browser on the same machine reaching a
wildcard-bound kgd over 127.0.0.1 is checked like a loopback bind.  Unix
sockets are not checked (no browser connects to one).  A request without
``Host`` (HTTP/1.0) is not a browser's and is accepted.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

LOOPBACK_NAMES = frozenset({"localhost"})


def host_name(host: str) -> str:
    """The name in a ``Host`` value, lower-cased, without port, brackets or a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return host  # not a bracketed address and port: compared whole, so never a loopback name
    else:
        name, colon, port = host.rpartition(":")
        if not colon or not port.isdigit():
            name = host
    return name.rstrip(".")


def allowed_names(names: Iterable[str]) -> frozenset[str]:
    """The ``--allow-host`` values as compared: each reduced with ``host_name`` (a port given is ignored)."""
    return frozenset(host_name(name) for name in names if name.strip())


def is_loopback_ip(text: str) -> bool:
    """True for 127.0.0.0/8, ::1 and an IPv4-mapped loopback address; False for anything else, names included."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def host_allowed(host: str | None, local_ip: str | None, allowed: frozenset[str] = frozenset()) -> bool:
    """May a request naming ``host`` be served, having reached the daemon at ``local_ip``?

    ``local_ip`` is None for a connection without an IP address (a Unix socket).
    """
    if local_ip is None or not is_loopback_ip(local_ip) or host is None:
        return True
    name = host_name(host)
    return name in LOOPBACK_NAMES or name in allowed or is_loopback_ip(name)
