"""Turn a kernel's iopub output into the HTTP response, without doing I/O.

An endpoint request runs up to three executions on one kernel: the
``REQUEST`` assignment, the endpoint code and, if the notebook has one, the
ResponseInfo code.  The route feeds the iopub messages of one execution
(already filtered by parent ``msg_id``) to an :class:`OutputCollector` as they
arrive; the collector says when the kernel went idle and then yields an
:class:`ExecutionOutcome`.  :func:`build_response` combines the endpoint and
ResponseInfo outcomes into the status, headers and body.

Rules kept from the reference gateway:

* stdout ``stream`` text is the body, joined verbatim (a stream without a
  ``name`` counts as stdout); stderr is dropped; ``display_data`` is ignored;
* without stdout, the last ``execute_result`` gives ``json.dumps(data)``,
  e.g. ``{"text/plain": "2"}``;
* an ``error`` wins over everything: 500 with ``Error {ename}: {evalue} \\n``
  (note the blank before the newline) and nothing printed before it;
* defaults are 200 and ``Content-Type: text/plain``; ResponseInfo prints JSON
  ``{"status": int, "headers": {name: value}}``, both optional, applied on
  top; an error in the ResponseInfo cell is a 500 with its error text.

Deliberate fix: when ResponseInfo output is not such a JSON object the
reference logged a JSONDecodeError and sent an empty 200, losing the body.
Here :func:`parse_response_info` raises :class:`ResponseInfoError` and the
response is a 500 naming the problem.  Unsafe header names or values (CR/LF
injection) and out-of-range statuses are rejected the same way.  A 204 or
304 carries no body, whatever the cell printed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "ExecutionOutcome",
    "HTTPResponse",
    "NO_BODY_STATUSES",
    "OutputCollector",
    "ResponseInfo",
    "ResponseInfoError",
    "build_response",
    "parse_response_info",
]

#: The reference's default response type (no charset parameter).
DEFAULT_CONTENT_TYPE = "text/plain"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")
#: Statuses that never carry a body (RFC 9110): a cell's output is dropped, and so is an ETag match's.
NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class ExecutionOutcome:
    """What one execution produced.

    ``error`` is the reference-format error text (``None`` if the code ran
    cleanly); ``text`` is the response text by the precedence above, and is
    empty when there was an error.
    """

    text: str = ""
    error: str | None = None


class OutputCollector:
    """Accumulates the iopub messages of one execution as they arrive.

    Feed every message whose parent is the execute request, in arrival
    order; :meth:`feed` returns ``True`` once the kernel reported
    ``status: idle`` for it, after which :meth:`result` is final.  Messages
    fed after idle are ignored.  Malformed content never raises.
    """

    def __init__(self) -> None:
        self._stdout: list[str] = []
        self._result: Any = None
        self._error: str | None = None
        self.done = False

    def feed(self, msg_type: str, content: Mapping[str, Any]) -> bool:
        """Record one message; return whether the execution has finished."""
        if self.done or not isinstance(content, Mapping):
            return self.done
        if msg_type == "status":
            self.done = content.get("execution_state") == "idle"
        elif msg_type == "stream":
            if content.get("name", "stdout") == "stdout":
                self._stdout.append(_as_text(content.get("text", "")))
        elif msg_type == "execute_result":
            self._result = content.get("data")
        elif msg_type == "error":
            ename = _as_text(content.get("ename", ""))
            evalue = _as_text(content.get("evalue", ""))
            self._error = f"Error {ename}: {evalue} \n"
        return self.done

    def result(self) -> ExecutionOutcome:
        """The outcome by precedence: error > stdout > execute_result > ``""``."""
        if self._error is not None:
            return ExecutionOutcome(error=self._error)
        if self._stdout:
            return ExecutionOutcome("".join(self._stdout))
        if self._result:
            return ExecutionOutcome(json.dumps(self._result, default=str))
        return ExecutionOutcome()


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class ResponseInfoError(ValueError):
    """ResponseInfo output is not ``{"status": int, "headers": {...}}``.

    The message explains what is wrong, for the 500 body and the log.
    """


@dataclass(frozen=True)
class ResponseInfo:
    """Status and headers a ResponseInfo cell asked for (``None``: keep 200)."""

    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ResponseInfoError(f"header {name!r} must be a string or a number")
    text = str(value)
    if _UNSAFE_VALUE.search(text):
        raise ResponseInfoError(f"header {name!r} contains a line break or NUL")
    return text


def parse_response_info(output: str) -> ResponseInfo:
    """Read the printed ResponseInfo JSON; raise ResponseInfoError if invalid.

    ``status`` must be an integer in 200..599 (1xx is not a final response);
    ``headers`` an object of token names to string or number values.  Other
    keys are ignored, as in the reference.
    """
    try:
        document = json.loads(output)
    except (ValueError, RecursionError):
        shown = output if len(output) <= 80 else output[:77] + "..."
        raise ResponseInfoError(f"ResponseInfo output is not JSON: {shown!r}") from None
    if not isinstance(document, dict):
        raise ResponseInfoError("ResponseInfo output must be a JSON object")
    status = document.get("status")
    if "status" in document and (
        isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599
    ):
        raise ResponseInfoError(
            f"ResponseInfo status must be an integer in 200-599, not {status!r}"
        )
    raw_headers = document.get("headers", {})
    if not isinstance(raw_headers, dict):
        raise ResponseInfoError("ResponseInfo headers must be a JSON object")
    headers = []
    for name, value in raw_headers.items():
        if not _TOKEN.fullmatch(name):
            raise ResponseInfoError(f"invalid header name {name!r}")
        headers.append((name, _header_value(name, value)))
    return ResponseInfo(status, tuple(headers))


@dataclass(frozen=True)
class HTTPResponse:
    """The response to send: status, headers in order, body bytes (UTF-8).

    Lone surrogates a kernel may emit (JSON can carry them) become ``?``.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = field(default=())
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """Value of header *name* (case-insensitive), or ``None``."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)


def _error_response(text: str) -> HTTPResponse:
    body = text.encode("utf-8", errors="replace")
    return HTTPResponse(500, (("Content-Type", DEFAULT_CONTENT_TYPE),), body)


def build_response(
    endpoint: ExecutionOutcome, response_info: ExecutionOutcome | None = None
) -> HTTPResponse:
    """The HTTP response for an endpoint outcome and optional ResponseInfo one.

    ResponseInfo headers replace defaults of the same name (case-insensitive),
    so a cell can set ``Content-Type``.
    """
    if endpoint.error is not None:
        return _error_response(endpoint.error)
    status = 200
    headers: dict[str, tuple[str, str]] = {"content-type": ("Content-Type", DEFAULT_CONTENT_TYPE)}
    if response_info is not None:
        if response_info.error is not None:
            return _error_response(response_info.error)
        try:
            info = parse_response_info(response_info.text)
        except ResponseInfoError as error:
            return _error_response(f"Error ResponseInfoError: {error} \n")
        status = info.status if info.status is not None else status
        for name, value in info.headers:
            headers[name.lower()] = (name, value)
    body = b"" if status in NO_BODY_STATUSES else endpoint.text.encode("utf-8", errors="replace")
    return HTTPResponse(status, tuple(headers.values()), body)
