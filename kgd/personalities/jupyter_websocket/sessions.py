"""Jupyter Server's sessions API: ``/api/sessions`` and ``/api/sessions/{id}``.

A session ties a document (``path``, ``name``, ``type``) to a kernel.
``SessionStore`` is the pure, in-memory table (nothing persists across
restarts, as in the reference); ``SessionsAPI`` answers the routes over it
and the ``Kernels`` service, as a Klein app of its own that the kernels REST
app mounts at ``/api/sessions`` (a branch route), with the same JSON errors.

The reference's defects are fixed: ``GET``/``PATCH /api/sessions/{id}``
work (the reference answers 500), ``POST`` honours ``--max-kernels`` and an
existing ``kernel.id``, and posting an existing path returns that session as
Jupyter Server does (the reference answers 500).  A session whose kernel is
gone is dropped before any answer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from klein import Klein
from twisted.web.iweb import IRequest

from kgd.gateway import Gateway
from kgd.kernels.kernels import UnknownKernel
from kgd.kernels.specs import UnknownKernelSpec
from kgd.personalities.jupyter_websocket.start_errors import kernel_start_http_error
from kgd.web.error_handlers import install_error_handlers
from kgd.web.errors import HTTPError
from kgd.personalities.jupyter_websocket.body_schemas import validate_body
from kgd.web.json_body import json_response, read_json_object


class UnknownSession(LookupError):
    """No session has this id."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"Session not found: {session_id}")
        self.session_id = session_id


@dataclass(frozen=True)
class NotebookSession:
    """One row of the session table."""

    session_id: str
    path: str
    name: str
    type: str
    kernel_id: str


class SessionStore:
    """Sessions by id, in creation order; pure data, no I/O."""

    def __init__(self, new_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self._sessions: dict[str, NotebookSession] = {}
        self._new_id = new_id

    def create(self, path: str, name: str, type: str, kernel_id: str) -> NotebookSession:
        """Add a session and return it."""
        session = NotebookSession(self._new_id(), path, name, type, kernel_id)
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str) -> NotebookSession:
        """The session with this id; ``UnknownSession`` if there is none."""
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSession(session_id) from None

    def find_by_path(self, path: str) -> NotebookSession | None:
        """The session for a document path, if any."""
        return next((s for s in self._sessions.values() if s.path == path), None)

    def list(self) -> list[NotebookSession]:
        """Every session, oldest first."""
        return list(self._sessions.values())

    def update(self, session_id: str, **changes: str) -> NotebookSession:
        """Change some of ``path``, ``name``, ``type``, ``kernel_id``; return the new row."""
        unknown = set(changes) - {"path", "name", "type", "kernel_id"}
        if unknown:
            raise TypeError(f"not session fields: {sorted(unknown)}")
        session = replace(self.get(session_id), **changes)
        self._sessions[session_id] = session
        return session

    def delete(self, session_id: str) -> NotebookSession:
        """Remove a session and return it; ``UnknownSession`` if there is none."""
        session = self.get(session_id)
        del self._sessions[session_id]
        return session

    def uses_kernel(self, kernel_id: str) -> bool:
        """True if some session is bound to this kernel."""
        return any(s.kernel_id == kernel_id for s in self._sessions.values())

    def prune(self, live_kernel_ids: Iterable[str]) -> list[NotebookSession]:
        """Drop sessions whose kernel is not among ``live_kernel_ids``; return them."""
        live = set(live_kernel_ids)
        dropped = [s for s in self._sessions.values() if s.kernel_id not in live]
        for session in dropped:
            del self._sessions[session.session_id]
        return dropped


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
    """The session routes over a ``SessionStore`` and the kernels; paths are below ``/api/sessions``.

    ``list_sessions`` is ``--list-kernels``: without it, listing is forbidden.
    """

    app = Klein()
    install_error_handlers(app)

    def __init__(self, gateway: Gateway, *, list_sessions: bool = False, store: SessionStore | None = None) -> None:
        self.gateway = gateway
        self.kernels = gateway.kernels
        self.list_sessions = list_sessions
        self.store = store or SessionStore()

    def _model(self, session: NotebookSession) -> dict[str, Any]:
        return session_model(session, self.kernels.get(session.kernel_id).model())

    def _prune(self) -> None:
        self.store.prune(kernel.kernel_id for kernel in self.kernels.list())

    def _session(self, session_id: str) -> NotebookSession:
        self._prune()
        try:
            return self.store.get(session_id)
        except UnknownSession as error:
            raise HTTPError(404, str(error)) from None

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
        """Shut a kernel down once no session uses it any more."""
        if self.store.uses_kernel(kernel_id):
            return
        try:
            await self.kernels.shutdown_kernel(kernel_id)
        except UnknownKernel:
            pass

    @app.route("/", methods=["GET"])
    def list(self, request: IRequest) -> bytes:
        if not self.list_sessions:
            raise HTTPError(403, "Forbidden")
        self._prune()
        return json_response(request, [self._model(s) for s in self.store.list()])

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
        self._prune()
        session = self.store.find_by_path(path)
        if session is None:
            started = await self._start_kernel(kernel_name, kernel_id, path)
            session = self.store.create(path, name, type, started)
        request.setHeader(b"Location", self.gateway.url("api", "sessions", session.session_id).encode())
        return json_response(request, self._model(session), status=201)

    @app.route("/<session_id>", methods=["GET"])
    def get(self, request: IRequest, session_id: str) -> bytes:
        return json_response(request, self._model(self._session(session_id)))

    @app.route("/<session_id>", methods=["PATCH"])
    async def update(self, request: IRequest, session_id: str) -> bytes:
        before = self._session(session_id)
        body = read_json_object(request)
        if not body:
            raise HTTPError(400, "No JSON data provided")
        validate_body("SessionUpdate", body)
        changes = {key: value for key in ("path", "name", "type") if (value := _string_field(body, key)) is not None}
        if "kernel" in body:
            kernel_name, kernel_id = _kernel_field(body)
            if kernel_id is not None:
                try:
                    self.kernels.get(kernel_id)
                except UnknownKernel:
                    raise HTTPError(400, f"No such kernel: {kernel_id}") from None
                changes["kernel_id"] = kernel_id
            elif kernel_name is not None:
                changes["kernel_id"] = await self._start_kernel(kernel_name, None, changes.get("path", before.path))
        try:
            session = self.store.update(session_id, **changes)
        except UnknownSession:
            # Deleted while a new kernel was starting: do not leave that kernel behind.
            if changes.get("kernel_id", before.kernel_id) != before.kernel_id:
                await self._release_kernel(changes["kernel_id"])
            raise HTTPError(404, f"Session not found: {session_id}") from None
        if session.kernel_id != before.kernel_id:
            await self._release_kernel(before.kernel_id)
        return json_response(request, self._model(session))

    @app.route("/<session_id>", methods=["DELETE"])
    async def delete(self, request: IRequest, session_id: str) -> bytes:
        session = self._session(session_id)
        self.store.delete(session_id)
        await self._release_kernel(session.kernel_id)
        request.setResponseCode(204)
        return b""

