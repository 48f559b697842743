"""The HTTP connection: twisted.web's ``HTTPChannel``, bounded for clients that do not read.

A client may pipeline requests and never read the responses.  twisted.web
is the transport's push producer and is told when the transport's buffer
is full, but it stops reading only if no request is being handled at that
moment, and does not stop once that request is done; since most answers are
written while their request is handled, it read on, and every response
piled up in memory (about 3 MiB/s per connection, no token needed).

``GatewayChannel`` stops reading whenever the transport says its buffer is
full, whatever is being handled, and resumes when it has drained.  Requests
already read still get their answers; what they write while the transport
is full is counted, and past ``MAX_UNREAD_BYTES`` the connection is closed
and nothing more of it is answered.  So one connection holds at most the
transport's own buffer (64 KiB), that bound and one response.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

log = Logger()

#: Response bytes a connection may queue while its client is not reading, before it is closed.
MAX_UNREAD_BYTES = 4 * 1024**2


class GatewayChannel(HTTPChannel):
    """An ``HTTPChannel`` that stops reading from a client not reading its responses, and closes it past a bound."""

    max_unread = MAX_UNREAD_BYTES
    _unread = 0
    _closing = False

    # -- the transport's producer: told when its buffer is full and drained --

    def pauseProducing(self) -> None:
        super().pauseProducing()
        # HTTPChannel pauses the transport only when no request is being handled.
        self._networkProducer.pauseProducing()

    def resumeProducing(self) -> None:
        self._unread = 0
        super().resumeProducing()

    # -- what requests write --------------------------------------------------

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        if self._closing:
            return
        super().writeHeaders(version, code, reason, headers)
        pairs = headers.getAllRawHeaders() if isinstance(headers, Headers) else ((n, [v]) for n, v in headers)
        self._queued(len(version) + len(code) + len(reason) + 6 + sum(len(n) + len(v) + 4 for n, vs in pairs for v in vs))

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        super().write(data)
        self._queued(len(data))

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        if self._closing:
            return
        iovec = list(iovec)
        super().writeSequence(iovec)
        self._queued(sum(map(len, iovec)))

    def _queued(self, size: int) -> None:
        """Count bytes written while the transport is full; close the connection past the bound."""
        if not self._waitingForTransport:
            return
        self._unread += size
        if self._unread <= self.max_unread:
            return
        self._closing = True
        log.warn(
            "Closing HTTP connection from {peer}: over {limit} bytes of responses not read",
            peer=str(self.transport.getPeer()),
            limit=self.max_unread,
            event="http_client_not_reading",
        )
        # Requests already read but not yet handled are dropped, not answered into the void.
        self.clearLineBuffer()
        self._dataBuffer = []
        self.transport.abortConnection()
