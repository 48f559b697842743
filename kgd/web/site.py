"""The HTTP site: twisted.web's ``Site`` with kgd's access log.

Each finished request is one structured log event (method, path, status,
duration, bytes) instead of a combined-log line, and the path is written
without its query string's ``token`` value, so a token passed in a URL (as
browsers must for WebSockets) never reaches the log.  ``Authorization`` and
``Cookie`` headers are never logged at all.
"""

from __future__ import annotations

import re
import time
from urllib.parse import unquote_to_bytes

from klein.interfaces import IKleinRequest
from twisted.logger import Logger
from twisted.web.server import Request, Site
from werkzeug.exceptions import HTTPException

log = Logger(namespace="kgd.access")

_SECRET_QUERY_NAMES = {b"token"}
# twisted.web splits arguments on both "&" and ";", and takes everything after
# the first "?" (a "#" included) as the query: the log must read it the same way.
_ARGUMENT_SEPARATORS = re.compile(rb"([&;])")


def redact_uri(uri: bytes) -> str:
    """The request URI with every ``token`` query value replaced by ``[secret]``.

    Arguments are found exactly as ``twisted.web.http.parse_qs`` finds them
    for the auth check, so any value the server would accept as a token is
    redacted; everything else is kept byte for byte.
    """
    path, question, query = uri.partition(b"?")
    if not question:
        return uri.decode("latin-1")
    pieces = _ARGUMENT_SEPARATORS.split(query)
    for index in range(0, len(pieces), 2):
        name, equals, _ = pieces[index].partition(b"=")
        if equals and unquote_to_bytes(name.replace(b"+", b" ")) in _SECRET_QUERY_NAMES:
            pieces[index] = name + b"=[secret]"
    return (path + b"?" + b"".join(pieces)).decode("latin-1")


def route_of(request: Request) -> str:
    """The route that answered: a Klein rule such as ``/api/kernels/<kernel_id>``,
    the fixed path of a leaf resource, or ``unmatched``; never a concrete id."""
    mapper = getattr(IKleinRequest(request), "mapper", None)
    if mapper is not None:
        try:
            rule, _ = mapper.match(return_rule=True)
        except HTTPException:  # not found, wrong method, redirect
            return "unmatched"
        return str(rule.rule)
    if request.code == 404 or not request.prepath:
        return "unmatched"
    return "/" + "/".join(segment.decode("utf-8", "replace") for segment in request.prepath)


class GatewayRequest(Request):
    """A request that remembers when it arrived, and stops buffering a body above the site's limit.

    A body larger than ``GatewaySite.max_body_size`` is read and dropped,
    never kept; ``body_too_large`` tells the root resource to answer 413.
    """

    body_too_large = False

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()
        self._body_received = 0

    def _body_limit(self) -> int | None:
        return getattr(getattr(self.channel, "site", None), "max_body_size", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._body_limit()
        if limit is not None and length is not None and length > limit:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_received += len(data)
        limit = self._body_limit()
        if limit is not None and self._body_received > limit:
            self.body_too_large = True
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)


class GatewaySite(Site):
    """A Site whose access log is structured and never shows a token."""

    requestFactory = GatewayRequest

    def __init__(self, resource, *, max_body_size: int | None = None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(resource, **kwargs)
        self.displayTracebacks = False
        self.max_body_size = max_body_size

    def log(self, request: Request) -> None:
        started = getattr(request, "started", None)
        duration = time.monotonic() - started if started is not None else 0.0
        log.info(
            "{method} {path} {status} {duration_ms:.1f}ms",
            method=request.method.decode("latin-1"),
            path=redact_uri(request.uri),
            route=route_of(request),
            status=request.code,
            duration_ms=duration * 1000,
            bytes=request.sentLength,
            client=getattr(request.getClientAddress(), "host", None),
            event="http_request",
        )
