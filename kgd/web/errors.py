"""JSON errors: one shape, ``{"reason": ..., "message": ...}``, for every failure.

Routes raise ``HTTPError``; the web layer turns it (or any unexpected
exception, logged with its traceback on the server only) into a JSON body
with the right status.  The reference mixes two error shapes and leaks
tracebacks in 500s; kgd does neither.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Sequence

from twisted.web.iweb import IRequest


class HTTPError(Exception):
    """An error a client should see, with its status, message and extra headers."""

    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.reason = reason or phrase(status)
        self.headers = tuple(headers)


def phrase(status: int) -> str:
    """The standard reason phrase of a status code."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(status: int, message: str = "", reason: str | None = None) -> bytes:
    """The JSON body of an error response."""
    return json.dumps({"reason": reason or phrase(status), "message": message}).encode()


def write_error(request: IRequest, error: HTTPError) -> bytes:
    """Set the status and headers of ``error`` on ``request`` and return its body."""
    request.setResponseCode(error.status)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in error.headers:
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
    return error_body(error.status, error.message, error.reason)
