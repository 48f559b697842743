"""The notebook-http routes (Klein): endpoints from the notebook, and the reference's extras.

* every path goes to one catch-all route, which resolves it with
  ``Endpoints.match``: an unknown path is a 404 and a known path with
  another verb a 405 with ``Allow``, both answered at once, before any
  kernel is involved (the reference made a 405 wait for a free kernel);
* a matched endpoint builds ``REQUEST`` (a body that does not decode as its
  Content-Type is a 400, again before any kernel), then runs on a pool
  kernel; the kernel's output becomes the response;
* ``GET /_api/spec/swagger.json``: the spec, built once at startup;
* ``GET /_api/source`` with ``--allow-notebook-download``: the notebook's
  bytes as read at startup;
* ``/public/...`` with ``--static-path``: files of that folder, without a
  token (``is_public`` of the personality).  Without a static path that
  prefix is an ordinary endpoint path, and the token is checked here.

Token, Origin and CORS are the gateway's (``GatewayResource``), applied
before these routes.  Paths are matched on the segments the gateway decoded
and checked the token against (``route_segments``), never re-read from the
raw request: what is public and what an endpoint is are decided on one value.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from klein import Klein
from twisted.internet import defer
from twisted.web import http, static
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from kgd.personalities.notebook_http.annotations import Endpoints, Match, MethodNotAllowed
from kgd.personalities.notebook_http.execution import GatewayStopping, KernelExecutor, KernelLost
from kgd.personalities.notebook_http.outputs import NO_BODY_STATUSES, HTTPResponse
from kgd.personalities.notebook_http.public_paths import under_public
from kgd.personalities.notebook_http.kernel_pool import KernelPool, PoolUnavailable, RequestTimeout
from kgd.personalities.notebook_http.request import (
    BadRequestBody,
    assignment_code,
    build_request,
    code_with_request,
    request_json,
)
from kgd.web import auth
from kgd.web.errors import HTTPError, write_error
from kgd.web.error_handlers import install_error_handlers
from kgd.web.resource import route_segments


class _ErrorPage(Resource):
    """A JSON error for any method, in the gateway's one error shape."""

    isLeaf = True

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__()
        self._status = status
        self._message = message

    def render(self, request: IRequest) -> bytes:
        return write_error(request, HTTPError(self._status, self._message))


class PublicFolder(static.File):
    """``--static-path`` as served below ``/public/``: files only.

    As in the reference, a directory is a 403 (no listing, no index page);
    a missing file is a JSON 404.  ``..`` and encoded slashes never leave
    the folder (``FilePath.child`` refuses them), and neither does a
    symlink: anything whose real path is outside the folder is a 403, as the
    reference's ``StaticFileHandler`` answers and as kernelspec resources
    are confined.
    """

    indexNames: list[str] = []
    childNotFound = _ErrorPage(http.NOT_FOUND)
    forbidden = _ErrorPage(http.FORBIDDEN)
    outside = _ErrorPage(http.FORBIDDEN, "The path leads outside the static folder")

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self.root = os.path.realpath(path)

    def createSimilarFile(self, path: str) -> static.File:
        similar = super().createSimilarFile(path)
        similar.root = self.root  # every level is judged against the folder itself
        return similar

    def getChild(self, path: bytes, request: IRequest) -> Resource:
        child = super().getChild(path, request)
        if isinstance(child, static.File):
            real = os.path.realpath(child.path)
            if os.path.commonpath([self.root, real]) != self.root:
                return self.outside
        return child

    def directoryListing(self) -> Resource:
        return self.forbidden


def header_pairs(request: IRequest) -> list[tuple[bytes, bytes]]:
    """The request headers as (name, value) pairs, repeats kept."""
    return [(name, value) for name, values in request.requestHeaders.getAllRawHeaders() for value in values]


class NotebookRoutes:
    """The HTTP API a seed notebook declares, served from a kernel pool."""

    app = Klein()
    install_error_handlers(app)

    def __init__(
        self,
        endpoints: Endpoints,
        pool: KernelPool[KernelExecutor],
        *,
        swagger: bytes,
        source: bytes | None = None,
        public: IResource | None = None,
        auth_token: str = "",
        request_timeout: float = 0.0,
    ) -> None:
        self.endpoints = endpoints
        self.pool = pool
        self._swagger = swagger
        self._source = source
        self._public = public
        self._auth_token = auth_token
        self._request_timeout = request_timeout

    @app.route("/_api/spec/swagger.json", methods=["GET"])
    def swagger(self, request: IRequest) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return self._swagger

    @app.route("/_api/source", methods=["GET"])
    def source(self, request: IRequest) -> bytes:
        if self._source is None:
            raise HTTPError(404)
        request.setHeader(b"Content-Type", b"application/octet-stream")
        return self._body(request, self._source, etag=True)

    @app.route("/", branch=True)
    def endpoint(self, request: IRequest) -> Any:
        segments = route_segments(request)
        if under_public(segments):
            if self._public is not None:
                # static.File walks postpath as decoded bytes; FilePath.child keeps a "/" inside a segment in the folder.
                request.prepath.append(request.postpath[0])
                request.postpath = [segment.encode("utf-8") for segment in segments[1:]]
                return self._public
            if not auth.is_authorized(
                self._auth_token, request.getHeader(b"authorization"), (request.args or {}).get(b"token", [])
            ):
                raise HTTPError(401)
        found = self.endpoints.match(request.method.decode("latin-1"), segments)
        if isinstance(found, MethodNotAllowed):
            raise HTTPError(405, headers=[("Allow", ", ".join(found.allowed))])
        if not isinstance(found, Match):
            raise HTTPError(404)
        content = request.content.read() if request.content is not None else b""
        try:
            fields = build_request(
                body=content,
                query=request.uri.partition(b"?")[2],
                headers=header_pairs(request),
                path_params=found.path_params,
                gateway_token=self._auth_token or None,
            )
        except BadRequestBody as error:
            raise HTTPError(400, str(error)) from None
        language, text = self.endpoints.language, request_json(fields)
        folded = code_with_request(language, text, found.source, self.endpoints.comment_prefix)
        if folded is None:
            assignment, source = assignment_code(language, text), found.source
        else:
            assignment, source = None, folded
        answered = self.pool.serve(
            lambda executor: executor.respond(assignment, source, found.response_source),
            self._request_timeout,
        )
        return answered.addCallbacks(lambda response: self._respond(request, response), _as_http_error)

    def _respond(self, request: IRequest, response: HTTPResponse) -> bytes:
        request.setResponseCode(response.status)
        for name, value in response.headers:
            # Names are tokens (ASCII); a value beyond Latin-1 is sent as UTF-8 rather than failing.
            request.setHeader(name.encode("ascii"), value.encode("utf-8"))
        etag = request.method == b"GET" and response.status == http.OK and response.header("etag") is None
        return self._body(request, response.body, etag=etag)

    def _body(self, request: IRequest, body: bytes, *, etag: bool) -> bytes:
        """Finish with ``body``: a sha1 ETag (and 304) as tornado gave GETs, and a Content-Length."""
        if etag and request.setETag(b'"%s"' % hashlib.sha1(body).hexdigest().encode()) == http.CACHED:
            return b""
        if request.code in NO_BODY_STATUSES:
            return b""
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body


def _as_http_error(failure: Any) -> Any:
    """Turn a pool or kernel failure into the client's error; anything else stays a 500."""
    error = failure.value
    if isinstance(error, RequestTimeout):
        raise HTTPError(504, str(error))
    if isinstance(error, (PoolUnavailable, GatewayStopping)):
        raise HTTPError(503, str(error))
    if isinstance(error, KernelLost):
        raise HTTPError(500, f"The request did not complete: {error}")
    if isinstance(error, defer.CancelledError):
        return None  # the client went away; nothing to answer
    return failure
