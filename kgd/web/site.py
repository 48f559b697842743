"""The HTTP site: twisted.web's ``Site`` with kgd's access log.

Each finished request is one structured log event (method, path, status,
duration, bytes) instead of a combined-log line.  The path is written
without the value of any query argument whose name looks like a secret
(``token``, ``TOKEN``, ``token+``, ``access_token``, ``password``...), and
the configured token's value is replaced wherever it appears in the line,
even percent-encoded, so a token passed in a URL (as browsers must for
WebSockets), or misspelt there, never reaches the log.  ``Authorization`` and
``Cookie`` headers are never logged at all.  Durations are read from the
site's clock (the reactor, or a ``task.Clock`` in tests).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, unquote_plus, unquote_to_bytes

from klein.interfaces import IKleinRequest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request, Site
from werkzeug.exceptions import HTTPException

from kgd.web.http_channel import GatewayChannel

log = Logger(namespace="kgd.access")

#: The route of a request no route answered.
OTHER_ROUTE = "other"

REDACTED = "[secret]"
# Query names whose values are secrets, searched for in the decoded, lower-cased name:
# a near miss (TOKEN, token+, access_token) is a secret the client meant to send.
_SECRET_NAME = re.compile(r"token|secret|passw|auth|api[-_ ]?key")
# twisted.web splits arguments on both "&" and ";", and takes everything after
# the first "?" (a "#" included) as the query: the log must read it the same way.
_ARGUMENT_SEPARATORS = re.compile(rb"([&;])")


def redact_uri(uri: bytes, secret: str = "") -> str:
    """The request URI with secret query values, and ``secret`` itself, replaced by ``[secret]``.

    Arguments are split exactly as ``twisted.web.http.parse_qs`` splits them
    for the auth check; a value is hidden when its decoded name looks like a
    secret, in any case.  Everything else is kept byte for byte, except that
    a ``secret`` found only percent-encoded makes the line logged decoded.
    """
    path, question, query = uri.partition(b"?")
    if question:
        pieces = _ARGUMENT_SEPARATORS.split(query)
        for index in range(0, len(pieces), 2):
            name, equals, _ = pieces[index].partition(b"=")
            decoded = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace").lower()
            if equals and _SECRET_NAME.search(decoded):
                pieces[index] = name + b"=" + REDACTED.encode()
        uri = path + b"?" + b"".join(pieces)
    return hide(uri.decode("latin-1"), secret)


def hide(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced, as written or once percent-decoded."""
    if not secret:
        return text
    text = text.replace(secret, REDACTED)
    for decoded in (unquote(text, "latin-1"), unquote(text), unquote_plus(text)):
        if secret in decoded:
            return decoded.replace(secret, REDACTED)
    return text


def route_of(request: Request) -> str:
    """The route that answered: a Klein rule such as ``/api/kernels/<kernel_id>``,
    the fixed path of a mounted leaf resource, or ``other``; never a concrete id."""
    mapper = getattr(IKleinRequest(request), "mapper", None)
    if mapper is not None:
        try:
            rule, _ = mapper.match(return_rule=True)
        except HTTPException:  # not found, wrong method, redirect
            return OTHER_ROUTE
        return str(rule.rule)
    if request.code == 404 or not request.prepath:
        return OTHER_ROUTE
    return "/" + "/".join(segment.decode("utf-8", "replace") for segment in request.prepath)


class GatewayRequest(Request):
    """A request that remembers when it arrived, and stops buffering a body above the site's limit.

    A body larger than ``GatewaySite.max_body_size`` is read and dropped,
    never kept; ``body_too_large`` tells the root resource to answer 413.
    """

    body_too_large = False
    started: float | None = None

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        clock = getattr(getattr(self.channel, "site", None), "clock", None)
        if clock is not None:
            self.started = clock.seconds()
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
    """A Site whose access log is structured and never shows a token.

    ``clock`` (the reactor) times each request; ``auth_token`` is the value
    hidden wherever it appears in an access-log line.  Connections are
    ``GatewayChannel``: a client that does not read its responses is not read either.
    """

    protocol = GatewayChannel
    requestFactory = GatewayRequest

    def __init__(  # type: ignore[no-untyped-def]
        self,
        resource,
        *,
        clock: IReactorTime | None = None,
        max_body_size: int | None = None,
        auth_token: str = "",
        **kwargs,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        super().__init__(resource, reactor=clock, **kwargs)
        self.clock: IReactorTime = clock
        self.displayTracebacks = False
        self.max_body_size = max_body_size
        self._auth_token = auth_token

    def log(self, request: Any) -> None:
        started = getattr(request, "started", None)
        duration = max(0.0, self.clock.seconds() - started) if started is not None else 0.0
        log.info(
            "{method} {path} {status} {duration_ms:.1f}ms",
            method=hide(request.method.decode("latin-1"), self._auth_token),
            path=redact_uri(request.uri, self._auth_token),
            route=route_of(request),
            status=request.code,
            duration_ms=duration * 1000,
            bytes=request.sentLength,
            client=getattr(request.getClientAddress(), "host", None),
            event="http_request",
        )
