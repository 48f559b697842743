"""The Jupyter Server REST API for kernels and kernelspecs.

Routes, status codes and bodies follow the reference gateway (which follows
Jupyter Server), with its defects fixed: ``GET /api`` reports kgd's version,
errors always have the ``{"reason", "message"}`` shape, and restarting or
interrupting an unknown kernel is a 404.  ``/api/sessions`` is the sessions
API's own Klein app (``sessions.SessionsAPI``), mounted here by a branch route.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

import kgd
from kgd.gateway import Gateway
from kgd.kernels.kernel import Kernel, KernelGone, KernelStartError
from kgd.kernels.kernel_request import InvalidKernelRequest, validate_env
from kgd.kernels.kernels import UnknownKernel
from kgd.kernels.prespawn import PrespawnPool
from kgd.kernels.specs import ResourceNotFound, SpecModel, UnknownKernelSpec
from kgd.personalities.jupyter_websocket import openapi
from kgd.personalities.jupyter_websocket.jupyter_websocket_settings import JupyterWebsocketSettings
from kgd.personalities.jupyter_websocket.sessions import SessionsAPI
from kgd.personalities.jupyter_websocket.start_errors import kernel_start_http_error
from kgd.personalities.jupyter_websocket.ws_channels import Channels, ChannelsSettings
from kgd.web.errors import HTTPError
from kgd.personalities.jupyter_websocket.body_schemas import validate_body
from kgd.web.json_body import json_response, read_json_object
from kgd.web.error_handlers import install_error_handlers


class KernelsAPI:
    """``/api``, ``/api/kernelspecs``, ``/kernelspecs`` and ``/api/kernels`` routes; ``/api/sessions`` mounted."""

    app = Klein()
    install_error_handlers(app)

    def __init__(self, settings: JupyterWebsocketSettings, gateway: Gateway, pool: PrespawnPool | None = None) -> None:
        self.gateway = gateway
        self.kernels = gateway.kernels
        self.specs = gateway.specs
        self.list_kernels = settings.list_kernels
        self.channels = Channels(gateway.reactor, ChannelsSettings.from_settings(settings), gateway.metrics)
        self.sessions = SessionsAPI(gateway, list_sessions=settings.list_kernels)
        self.pool = pool

    # -- helpers -------------------------------------------------------------

    async def _kernel(self, kernel_id: str) -> Kernel:
        """The kernel, here or (with replicas) mirrored from the one that supervises it; 404 if none has it."""
        try:
            return await self.kernels.find(kernel_id)
        except UnknownKernel as error:
            raise HTTPError(404, str(error)) from None

    def _spec_json(self, model: SpecModel) -> dict[str, Any]:
        return {
            "name": model.name,
            "spec": model.spec,
            "resources": {
                _resource_key(fname): self.gateway.url("kernelspecs", model.name, fname) for fname in model.resource_files
            },
        }

    # -- sessions (their own app) ----------------------------------------------

    @app.route("/api/sessions", branch=True)
    def sessions_app(self, request: IRequest) -> Any:
        """Hand ``/api/sessions`` and what is below it to the sessions app, which sees the rest of the path."""
        if not request.postpath:
            # The collection itself: the sessions app's "/" (an empty path would be redirected there).
            request.postpath = [b""]
        return self.sessions.app.resource()

    # -- version -------------------------------------------------------------

    @app.route("/api", methods=["GET"])
    def version(self, request: IRequest) -> bytes:
        return json_response(request, {"version": kgd.__version__})

    # -- the API's own description (public) -----------------------------------

    @app.route("/api/swagger.json", methods=["GET"])
    def openapi_json(self, request: IRequest) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return openapi.as_json(self.gateway.base_url)

    @app.route("/api/swagger.yaml", methods=["GET"])
    def openapi_yaml(self, request: IRequest) -> bytes:
        request.setHeader(b"Content-Type", openapi.YAML_CONTENT_TYPE)
        return openapi.as_yaml(self.gateway.base_url)

    # -- kernelspecs ---------------------------------------------------------

    @app.route("/api/kernelspecs", methods=["GET"])
    def list_kernelspecs(self, request: IRequest) -> bytes:
        specs = {model.name: self._spec_json(model) for model in self.specs.models()}
        default = self.kernels.force_name or self.specs.default_name
        return json_response(request, {"default": default, "kernelspecs": specs})

    @app.route("/api/kernelspecs/<name>", methods=["GET"])
    def get_kernelspec(self, request: IRequest, name: str) -> bytes:
        try:
            model = self.specs.model(name)
        except UnknownKernelSpec:
            raise HTTPError(404, f"Kernel spec {name} not found") from None
        return json_response(request, self._spec_json(model))

    @app.route("/kernelspecs/<name>/<path:resource>", methods=["GET"])
    def get_kernelspec_resource(self, request: IRequest, name: str, resource: str) -> bytes:
        try:
            path = self.specs.resource_path(name, resource)
        except UnknownKernelSpec:
            raise HTTPError(404, f"Kernel spec {name} not found") from None
        except ResourceNotFound:
            raise HTTPError(404, f"Kernel spec resource {resource} not found") from None
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        request.setHeader(b"Content-Type", content_type.encode("latin-1"))
        request.setHeader(b"Cache-Control", b"max-age=2592000")
        with open(path, "rb") as f:
            return f.read()

    # -- kernels -------------------------------------------------------------

    @app.route("/api/kernels", methods=["GET"])
    async def list_kernels(self, request: IRequest) -> bytes:
        if not self.list_kernels:
            raise HTTPError(403, "Forbidden")
        await self.kernels.refresh()
        return json_response(request, [kernel.model() for kernel in self.kernels.list()])

    @app.route("/api/kernels", methods=["POST"])
    async def start_kernel(self, request: IRequest) -> bytes:
        body = read_json_object(request)
        validate_body("KernelStart", body)
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise HTTPError(400, "name must be a string")
        path = body.get("path")
        if path is not None and not isinstance(path, str):
            raise HTTPError(400, "path must be a string or null")
        kernel_id = body.get("kernel_id")
        if kernel_id is not None and not isinstance(kernel_id, str):
            raise HTTPError(400, "kernel_id must be a string")
        try:
            env = validate_env(body["env"]) if "env" in body else None
        except InvalidKernelRequest as error:
            raise HTTPError(400, str(error)) from None
        kernel = None
        # A prespawned kernel was started with no env, path or id of the request's: hand it out only if none is asked.
        if self.pool is not None and env is None and not path and kernel_id is None and self.pool.matches(name):
            kernel = await self.pool.take()
        if kernel is None:
            try:
                kernel = await self.kernels.start_kernel(name=name, env=env, path=path, kernel_id=kernel_id)
            except Exception as error:
                raise kernel_start_http_error(error) from None
        request.setHeader(b"Location", self.gateway.url("api", "kernels", kernel.kernel_id).encode())
        return json_response(request, kernel.model(), status=201)

    @app.route("/api/kernels/<kernel_id>", methods=["GET"])
    async def get_kernel(self, request: IRequest, kernel_id: str) -> bytes:
        return json_response(request, (await self._kernel(kernel_id)).model())

    @app.route("/api/kernels/<kernel_id>", methods=["DELETE"])
    async def delete_kernel(self, request: IRequest, kernel_id: str) -> bytes:
        await self._kernel(kernel_id)
        try:
            await self.kernels.shutdown_kernel(kernel_id)
        except (UnknownKernel, KernelGone):
            raise HTTPError(404, f"Kernel does not exist: {kernel_id}") from None
        request.setResponseCode(204)
        return b""

    @app.route("/api/kernels/<kernel_id>/interrupt", methods=["POST"])
    async def interrupt_kernel(self, request: IRequest, kernel_id: str) -> bytes:
        kernel = await self._kernel(kernel_id)
        try:
            await kernel.interrupt()
        except KernelGone:
            raise HTTPError(404, f"Kernel does not exist: {kernel_id}") from None
        request.setResponseCode(204)
        return b""

    @app.route("/api/kernels/<kernel_id>/restart", methods=["POST"])
    async def restart_kernel(self, request: IRequest, kernel_id: str) -> bytes:
        kernel = await self._kernel(kernel_id)
        try:
            await kernel.restart()
        except KernelGone:
            raise HTTPError(404, f"Kernel does not exist: {kernel_id}") from None
        except KernelStartError as error:
            raise HTTPError(500, f"Kernel failed to restart: {error}") from None
        return json_response(request, kernel.model())

    @app.route("/api/kernels/<kernel_id>/channels", methods=["GET"])
    async def kernel_channels(self, request: IRequest, kernel_id: str) -> Any:
        """Upgrade to the channels WebSocket (see ``channels``); 404 (unknown kernel) or 503
        (``--max-connections`` reached) before the upgrade."""
        kernel = await self._kernel(kernel_id)
        if (request.getHeader(b"upgrade") or b"").lower() != b"websocket":
            raise HTTPError(400, 'Can "Upgrade" only to "WebSocket".')
        self.channels.admit()
        session_ids = (request.args or {}).get(b"session_id") or [b""]
        session_id = session_ids[0].decode("utf-8", "replace") or None
        return self.channels.resource(kernel, session_id)


def _resource_key(fname: str) -> str:
    """The key Jupyter Server uses for a resource file: logos lose their extension."""
    if fname.startswith("logo-"):
        return fname.rsplit(".", 1)[0]
    return fname
