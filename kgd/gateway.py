"""What every personality is built from: the config and the running parts.

One object instead of a global settings dict: a personality's routes take
the ``Gateway`` they are given and use only what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kgd.kernels.kernels import Kernels
from kgd.kernels.specs import KernelSpecs
from kgd.metrics import Metrics
from kgd.options import GatewayConfig
from kgd.readiness import Readiness


@dataclass
class Gateway:
    """The configuration, the kernels and the reactor, shared by all personalities.

    ``metrics`` is where personalities count what they relay
    (``gateway.metrics.message_relayed(...)``); ``readiness`` is where a part
    that needs time before kgd takes traffic says so (``readiness.track(...)``).
    """

    config: GatewayConfig
    kernels: Kernels
    specs: KernelSpecs
    reactor: Any
    extras: dict[str, Any] = field(default_factory=dict)
    #: Services a personality needs running (e.g. a kernel pool); the daemon
    #: starts them after the kernels service and stops them before it.
    services: list[Any] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Readiness = field(default_factory=Readiness)

    def url(self, *segments: str) -> str:
        """An absolute path below the base URL, e.g. ``url("api", "kernels", kid)``."""
        return self.config.base_url + "/".join(segments)
