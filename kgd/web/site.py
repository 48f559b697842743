"""The HTTP site: twisted.web's ``Site`` with kgd's access log.

Each finished request is one structured log event (method, path, status,
duration, bytes) instead of a combined-log line, and the path is written
without its query string's ``token`` value, so a token passed in a URL (as
browsers must for WebSockets) never reaches the log.  ``Authorization`` and
``Cookie`` headers are never logged at all.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twisted.logger import Logger
from twisted.web.server import Request, Site

log = Logger(namespace="kgd.access")

_SECRET_QUERY_NAMES = {"token"}


def redact_uri(uri: bytes) -> str:
    """The request URI with any ``token`` query value replaced by ``[secret]``."""
    text = uri.decode("latin-1")
    parts = urlsplit(text)
    if not parts.query:
        return text
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name in _SECRET_QUERY_NAMES for name, _ in pairs):
        return text
    cleaned = [(name, "[secret]" if name in _SECRET_QUERY_NAMES else value) for name, value in pairs]
    return urlunsplit(parts._replace(query=urlencode(cleaned, safe="[]")))


class GatewayRequest(Request):
    """A request that remembers when it arrived, for the access log."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()


class GatewaySite(Site):
    """A Site whose access log is structured and never shows a token."""

    requestFactory = GatewayRequest

    def __init__(self, resource, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(resource, **kwargs)
        self.displayTracebacks = False

    def log(self, request: Request) -> None:
        started = getattr(request, "started", None)
        duration = time.monotonic() - started if started is not None else 0.0
        log.info(
            "{method} {path} {status} {duration_ms:.1f}ms",
            method=request.method.decode("latin-1"),
            path=redact_uri(request.uri),
            status=request.code,
            duration_ms=duration * 1000,
            bytes=request.sentLength,
            client=getattr(request.getClientAddress(), "host", None),
            event="http_request",
        )
