"""Error handlers shared by every Klein app of the gateway.

``install_error_handlers(app)`` makes a Klein app answer routing misses,
wrong methods (with ``Allow``), ``HTTPError``, an unreachable kernel store or replica (503, with the
reason) and unexpected exceptions in the one JSON error shape; an unexpected exception is logged with its
traceback and the client sees only a 500 with a short message.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from kgd.kernels.records import StoreUnavailable
from kgd.kernels.replica_events import NoReply
from kgd.kernels.replication import OwnerFailed
from kgd.web.errors import HTTPError, write_error

log = Logger()


def install_error_handlers(app: Klein) -> None:
    """Register the gateway's JSON error handlers on a Klein app."""

    @app.handle_errors(HTTPError)
    def http_error(instance: Any, request: IRequest, failure: Failure) -> bytes:
        return write_error(request, failure.value)

    # Among replicas: Redis down, or the replica that supervises the kernel silent or failing.
    @app.handle_errors(StoreUnavailable, NoReply)
    def unavailable(instance: Any, request: IRequest, failure: Failure) -> bytes:
        return write_error(request, HTTPError(503, failure.getErrorMessage()))

    @app.handle_errors(OwnerFailed)
    def owner_failed(instance: Any, request: IRequest, failure: Failure) -> bytes:
        return write_error(request, HTTPError(500, failure.getErrorMessage()))

    # werkzeug "redirects" a path with an empty segment (``//``) to its merged
    # form; the gateway's routes are exact, as the reference's, so it is a 404.
    @app.handle_errors(NotFound, RequestRedirect)
    def not_found(instance: Any, request: IRequest, failure: Failure) -> bytes:
        return write_error(request, HTTPError(404))

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(instance: Any, request: IRequest, failure: Failure) -> bytes:
        allowed = ", ".join(sorted(failure.value.valid_methods or ()))
        return write_error(request, HTTPError(405, headers=[("Allow", allowed)] if allowed else ()))

    @app.handle_errors(Exception)
    def unexpected(instance: Any, request: IRequest, failure: Failure) -> bytes:
        log.failure(
            "unexpected error answering {method} {path}",
            failure,
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
        )
        return write_error(request, HTTPError(500, "Unknown server error"))
