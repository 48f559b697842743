"""The operator's routes, served beside every personality: metrics, probes, status.

- ``GET /metrics``: Prometheus text format; needs the token unless ``--metrics-public``.
- ``GET /healthz``: 200 while the process answers at all (liveness); no token.
- ``GET /readyz``: 200 once kgd listens, its default kernelspec loads and its
  prespawn pool is filled, 503 with what is missing until then (readiness); no token.
- ``GET /api/status``: Jupyter Server's status model (``started``,
  ``last_activity``, ``kernels``, ``connections``); needs the token.

Each is a leaf resource mounted at its own fixed path below the base URL
(``ops_mounts``), ahead of the personality mounted at the base URL itself:
the gateway resource matches the longest mount prefix first.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from kgd.gateway import Gateway
from kgd.kernels.specs import UnknownKernelSpec
from kgd.metrics import CONTENT_TYPE
from kgd.timestamps import isoformat
from kgd.web.errors import HTTPError, write_error
from kgd.web.json_body import json_response
from kgd.web.resource import Mount

Render = Callable[[IRequest], bytes]


class ReadOnlyEndpoint(Resource):
    """One fixed path answering GET (and HEAD); anything below it is a 404, other methods a 405."""

    isLeaf = True

    def __init__(self, get: Render) -> None:
        super().__init__()
        self._get = get

    def render(self, request: IRequest) -> bytes:
        if request.postpath not in ([], [b""]):
            return write_error(request, HTTPError(404))
        if request.method not in (b"GET", b"HEAD"):
            return write_error(request, HTTPError(405, headers=[("Allow", "GET, HEAD")]))
        return self._get(request)


class OpsRoutes:
    """What the operator's routes answer, from the gateway's state.

    ``started`` is read from the gateway's clock when the routes are built,
    that is while the daemon is.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.started = datetime.fromtimestamp(gateway.reactor.seconds(), timezone.utc)

    def metrics(self, request: IRequest) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE.encode("latin-1"))
        return self.gateway.metrics.exposition()

    def healthz(self, request: IRequest) -> bytes:
        return json_response(request, {"status": "ok"})

    def readyz(self, request: IRequest) -> bytes:
        readiness = self.gateway.readiness
        checks = {name: True for name in readiness.met()}
        checks.update({name: False for name in readiness.pending()})
        checks["kernelspecs"] = self._kernelspecs_load()
        ready = all(checks.values())
        return json_response(request, {"ready": ready, "checks": checks}, status=200 if ready else 503)

    def _kernelspecs_load(self) -> bool:
        specs = self.gateway.specs
        try:
            specs.get(self.gateway.kernels.force_name or specs.default_name)
        except (UnknownKernelSpec, ValueError, OSError):
            return False
        return True

    def status(self, request: IRequest) -> bytes:
        kernels = self.gateway.kernels.list()
        last_activity = max([self.started, *(k.last_activity for k in kernels)])
        return json_response(
            request,
            {
                "started": isoformat(self.started),
                "last_activity": isoformat(last_activity),
                "kernels": len(kernels),
                "connections": sum(k.connections for k in kernels),
            },
        )


def ops_mounts(gateway: Gateway, *, metrics_public: bool = False) -> list[Mount]:
    """The operator's routes as mounts for the gateway resource; ``--metrics-public`` drops the token from /metrics."""
    routes = OpsRoutes(gateway)
    return [
        Mount(("metrics",), ReadOnlyEndpoint(routes.metrics), lambda segments: metrics_public),
        Mount(("healthz",), ReadOnlyEndpoint(routes.healthz), lambda segments: True),
        Mount(("readyz",), ReadOnlyEndpoint(routes.readyz), lambda segments: True),
        Mount(("api", "status"), ReadOnlyEndpoint(routes.status), lambda segments: False),
    ]
