"""The running parts every personality is built on: kernels, specs, clock, metrics, readiness, sessions.

No settings live here: ``kgd.service.makeService`` reads the settings once
and hands each personality its own values beside this object, so a
personality's routes use only what they are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kgd.interfaces import ISessionTable
from kgd.kernels.kernels import Kernels
from kgd.kernels.seed import Seed
from kgd.kernels.session_table import MemorySessionTable
from kgd.kernels.specs import KernelSpecs
from kgd.metrics import Metrics
from kgd.readiness import Readiness


@dataclass
class Gateway:
    """The kernels, the reactor and the daemon's instruments, shared by all personalities.

    ``metrics`` is where personalities count what they relay
    (``gateway.metrics.message_relayed(...)``); ``readiness`` is where a part
    that needs time before kgd takes traffic says so (``readiness.track(...)``).
    """

    kernels: Kernels
    specs: KernelSpecs
    reactor: Any
    #: The URL prefix of every route, ``/segments/`` (``--base-url``).
    base_url: str = "/"
    #: The ``--seed-uri`` notebook run on every new kernel, if the daemon seeds kernels.
    seed: Seed | None = None
    #: Services a personality needs running (e.g. a kernel pool); the daemon
    #: starts them after the kernels service and stops them before it.
    services: list[Any] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Readiness = field(default_factory=Readiness)
    #: Jupyter Server's sessions: in memory, or shared by replicas in their Redis store.
    session_table: ISessionTable = field(default_factory=MemorySessionTable)

    def url(self, *segments: str) -> str:
        """An absolute path below the base URL, e.g. ``url("api", "kernels", kid)``."""
        return self.base_url + "/".join(segments)
