"""Jupyter Server's sessions API: ``/api/sessions`` and ``/api/sessions/{id}``.

A session ties a document (``path``, ``name``, ``type``) to a kernel.
``SessionsAPI`` answers the routes over the gateway's session table (an
``ISessionTable``: in memory, or shared by replicas in Redis, so a session
made through one replica is served by every one) and the ``Kernels``
service, as a Klein app of its own that the kernels REST app mounts at
``/api/sessions`` (a branch route), with the same JSON errors.  Kernels are
looked up with ``Kernels.find``: among replicas a session's kernel may be
supervised by another one.

The reference's defects are fixed: ``GET``/``PATCH /api/sessions/{id}``
work (the reference answers 500), ``POST`` honours ``--max-kernels`` and an
existing ``kernel.id``, and posting an existing path returns that session as
Jupyter Server does (the reference answers 500).  A session whose kernel is
gone is dropped before any answer; a table out of reach (Redis down) is a
503 with the reason.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from kgd.gateway import Gateway
from kgd.kernels.kernel import KernelGone
from kgd.kernels.kernels import UnknownKernel
from kgd.kernels.session_table import NotebookSession, UnknownSession
from kgd.kernels.specs import UnknownKernelSpec
from kgd.personalities.jupyter_websocket.start_errors import kernel_start_http_error
from kgd.web.error_handlers import install_error_handlers
from kgd.web.errors import HTTPError
from kgd.personalities.jupyter_websocket.body_schemas import validate_body
from kgd.web.json_body import json_response, read_json_object


def session_model(session: NotebookSession, kernel_model: dict[str, Any]) -> dict[str, Any]:
    """The REST model: Jupyter Server's fields plus the legacy ``notebook`` the reference sends."""
    return {
        "id": session.session_id,
        "path": session.path,
        "name": session.name,
        "type": session.type,
        "kernel": kernel_model,
        "notebook": {"path": session.path, "name": session.name},
    }


def _string_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise HTTPError(400, f"{key} must be a string")
    return value


def _kernel_field(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The ``kernel`` object's ``name`` and ``id``."""
    kernel = body.get("kernel") or {}
    if not isinstance(kernel, dict):
        raise HTTPError(400, "kernel must be an object")
    return _string_field(kernel, "name"), _string_field(kernel, "id")


class SessionsAPI:
    """The session routes over the gateway's session table and kernels; paths are below ``/api/sessions``.

    ``list_sessions`` is ``--list-kernels``: without it, listing is forbidden.
    """

    app = Klein()
    install_error_handlers(app)

    def __init__(self, gateway: Gateway, *, list_sessions: bool = False) -> None:
        self.gateway = gateway
        self.kernels = gateway.kernels
        self.table = gateway.session_table
        self.list_sessions = list_sessions

    async def _model(self, session: NotebookSession) -> dict[str, Any] | None:
        """The session's REST model; None, and the session dropped, if its kernel is gone (on every replica)."""
        try:
            kernel = await self.kernels.find(session.kernel_id)
        except UnknownKernel:
            await self.table.forget_kernels([session.kernel_id])
            return None
        return session_model(session, kernel.model())

    async def _answer(self, session: NotebookSession) -> dict[str, Any]:
        """The session's REST model; 404 if its kernel is gone (the session is dropped)."""
        model = await self._model(session)
        if model is None:
            raise HTTPError(404, f"Session not found: {session.session_id}")
        return model

    async def _session(self, session_id: str) -> tuple[NotebookSession, dict[str, Any]]:
        """The session and its model; 404 if there is none or its kernel is gone."""
        try:
            session = await self.table.get(session_id)
        except UnknownSession as error:
            raise HTTPError(404, str(error)) from None
        return session, await self._answer(session)

    async def _start_kernel(self, name: str | None, kernel_id: str | None, path: str) -> str:
        """A kernel for a session: the running one named by ``kernel_id``, else a new one."""
        try:
            kernel = await self.kernels.start_kernel(name=name, path=path, kernel_id=kernel_id)
        except UnknownKernelSpec:
            raise HTTPError(
                501,
                f"The '{name}' kernel is not available. Please pick another suitable kernel instead, or install that kernel.",
            ) from None
        except Exception as error:
            raise kernel_start_http_error(error) from None
        return kernel.kernel_id

    async def _release_kernel(self, kernel_id: str) -> None:
        """Shut a kernel down (wherever it is supervised) once no session uses it any more."""
        if await self.table.uses_kernel(kernel_id):
            return
        try:
            await self.kernels.shutdown_kernel(kernel_id)
        except (UnknownKernel, KernelGone):
            pass

    @app.route("/", methods=["GET"])
    async def list(self, request: IRequest) -> bytes:
        if not self.list_sessions:
            raise HTTPError(403, "Forbidden")
        models = [await self._model(session) for session in await self.table.list()]
        return json_response(request, [model for model in models if model is not None])

    @app.route("/", methods=["POST"])
    async def create(self, request: IRequest) -> bytes:
        body = read_json_object(request)
        if not body:
            raise HTTPError(400, "No JSON data provided")
        validate_body("SessionCreate", body)
        notebook = body.get("notebook")
        if notebook is not None and not isinstance(notebook, dict):
            raise HTTPError(400, "notebook must be an object")
        path = _string_field(body, "path") or _string_field(notebook or {}, "path")
        if not path:
            raise HTTPError(400, "Missing field in JSON data: path")
        type = _string_field(body, "type") or ("notebook" if notebook is not None else None)
        if not type:
            raise HTTPError(400, "Missing field in JSON data: type")
        name = _string_field(body, "name") or _string_field(notebook or {}, "name") or ""
        kernel_name, kernel_id = _kernel_field(body)
        session = await self.table.find_by_path(path)
        model = None if session is None else await self._model(session)
        if model is None:
            started = await self._start_kernel(kernel_name, kernel_id, path)
            session, created = await self.table.add(path, name, type, started)
            if not created and kernel_id is None:  # another replica made this path's session meanwhile: it wins
                await self._release_kernel(started)
            model = await self._answer(session)
        request.setHeader(b"Location", self.gateway.url("api", "sessions", session.session_id).encode())
        return json_response(request, model, status=201)

    @app.route("/<session_id>", methods=["GET"])
    async def get(self, request: IRequest, session_id: str) -> bytes:
        _, model = await self._session(session_id)
        return json_response(request, model)

    @app.route("/<session_id>", methods=["PATCH"])
    async def update(self, request: IRequest, session_id: str) -> bytes:
        before, _ = await self._session(session_id)
        body = read_json_object(request)
        if not body:
            raise HTTPError(400, "No JSON data provided")
        validate_body("SessionUpdate", body)
        changes = {key: value for key in ("path", "name", "type") if (value := _string_field(body, key)) is not None}
        if "kernel" in body:
            kernel_name, kernel_id = _kernel_field(body)
            if kernel_id is not None:
                try:
                    await self.kernels.find(kernel_id)
                except UnknownKernel:
                    raise HTTPError(400, f"No such kernel: {kernel_id}") from None
                changes["kernel_id"] = kernel_id
            elif kernel_name is not None:
                changes["kernel_id"] = await self._start_kernel(kernel_name, None, changes.get("path", before.path))
        try:
            session = await self.table.update(session_id, changes)
        except UnknownSession:
            # Deleted while a new kernel was starting: do not leave that kernel behind.
            if changes.get("kernel_id", before.kernel_id) != before.kernel_id:
                await self._release_kernel(changes["kernel_id"])
            raise HTTPError(404, f"Session not found: {session_id}") from None
        if session.kernel_id != before.kernel_id:
            await self._release_kernel(before.kernel_id)
        return json_response(request, await self._answer(session))

    @app.route("/<session_id>", methods=["DELETE"])
    async def delete(self, request: IRequest, session_id: str) -> bytes:
        await self._session(session_id)
        try:
            session = await self.table.remove(session_id)
        except UnknownSession as error:  # removed meanwhile through another replica
            raise HTTPError(404, str(error)) from None
        await self._release_kernel(session.kernel_id)
        request.setResponseCode(204)
        return b""
