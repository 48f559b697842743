"""Assemble notebook-http for a gateway: seed notebook, endpoints, kernel pool, routes.

Everything that can be checked before kgd listens is checked here, so a
misconfiguration stops the daemon with one line instead of serving errors:
a missing ``--seed-uri``, an unreadable notebook, a notebook without
endpoints (the reference's ``No endpoints were discovered...``), a
kernelspec that does not exist (unless ``--force-kernel-name`` names one
that does) and a ``--static-path`` that is not a folder.  These raise
``UsageError``, which twistd's boundary (``kgd.tap``) reports and exits on.

The pool is added to ``gateway.services``, so it starts after the kernels
service and stops before it: queued requests fail at once on SIGTERM.  Its
kernels are started under the ``NOTEBOOK_HTTP`` role, so the culler spares
them: the pool, not idleness, decides when they go.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.usage import UsageError
from twisted.web.resource import IResource

from kgd.gateway import Gateway
from kgd.kernels.kernel_request import choose_kernel_name
from kgd.personalities.notebook_http.annotations import Endpoints, NoEndpointsError, parse_notebook
from kgd.personalities.notebook_http.execution import KernelExecutor
from kgd.personalities.notebook_http.notebook import SeedNotebookError, load_seed_notebook
from kgd.personalities.notebook_http.notebook_http_settings import NotebookHttpSettings
from kgd.personalities.notebook_http.kernel_pool import KernelPool
from kgd.personalities.notebook_http.routes import NotebookRoutes, PublicFolder
from kgd.personalities.notebook_http.swagger import swagger_json

log = Logger()

#: The role (``Kernels.role``) of the pool's kernels.
NOTEBOOK_HTTP = "notebook-http"

NO_SEED_MESSAGE = (
    "notebook-http needs --seed-uri (KG_SEED_URI): the notebook whose annotated cells define the API"
)


def build_api(settings: NotebookHttpSettings, gateway: Gateway) -> IResource:
    """The notebook-http resource for ``gateway``; raises ``UsageError`` on bad settings."""
    if not settings.seed_uri:
        raise UsageError(NO_SEED_MESSAGE)
    try:
        notebook = load_seed_notebook(settings.seed_uri)
    except SeedNotebookError as error:
        raise UsageError(str(error)) from None
    endpoints = parse_notebook(notebook.content, mode=settings.cell_parser)
    try:
        endpoints.require()
    except NoEndpointsError as error:
        raise UsageError(str(error)) from None
    for warning in endpoints.warnings:
        log.warn("notebook-http: {warning}", warning=warning)
    spec_name = choose_kernel_name(notebook.kernel_name, gateway.specs.default_name, settings.force_kernel_name)
    try:
        gateway.specs.get(spec_name)
    except LookupError:
        raise UsageError(
            f"No such kernel named {spec_name} (the seed notebook's kernelspec); "
            "install it or choose one with --force-kernel-name"
        ) from None
    public = None
    if settings.static_path:
        if not os.path.isdir(settings.static_path):
            raise UsageError(f"--static-path {settings.static_path!r} is not a folder")
        public = PublicFolder(os.path.abspath(settings.static_path))
    for endpoint in endpoints.endpoints:
        log.info(
            "Registering resource: {path}, methods: ({methods})",
            path=endpoint.path,
            methods=list(endpoint.methods),
        )
    pool = KernelPool(
        max(1, settings.prespawn_count or 1),
        lambda: _start_member(gateway, spec_name, endpoints, settings.kernel_start_timeout),
        gateway.reactor,
    )
    gateway.services.append(pool)
    gateway.readiness.track("notebook-http pool", pool.filled())
    gateway.metrics.watch_queue_depth(lambda: pool.waiting)
    routes = NotebookRoutes(
        endpoints,
        pool,
        swagger=swagger_json(endpoints, settings.seed_uri).encode("utf-8"),
        source=notebook.raw if settings.allow_notebook_download else None,
        public=public,
        auth_token=settings.auth_token,
        request_timeout=settings.request_timeout,
    )
    return routes.app.resource()


@defer.inlineCallbacks
def _start_member(gateway: Gateway, spec_name: str, endpoints: Endpoints, cell_timeout: float) -> Any:
    """Start one pool kernel and run the notebook's seed cells on it (each within ``cell_timeout``)."""
    kernel = yield gateway.kernels.start_kernel(spec_name, role=NOTEBOOK_HTTP)
    executor = KernelExecutor(kernel, gateway.reactor, shutdown_kernel=gateway.kernels.shutdown_kernel)
    try:
        yield executor.seed(endpoints.seed_cells, cell_timeout)
    except Exception as error:
        executor.retire(f"seeding failed: {error}")
        raise
    return executor
