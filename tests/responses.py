"""What HTTP tests need of one response: status, headers and the body, parsed on demand."""

from __future__ import annotations

import json
from typing import Any


class Response:
    """Status, headers and raw body of one HTTP response, read in full."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)
