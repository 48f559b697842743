"""Reading JSON request bodies and writing JSON responses.

A body that is not JSON, or not the JSON shape a route expects, is the
client's mistake and becomes a 400 with a reason, never a 500. That includes
JSON that Python parses but cannot use: nesting deeper than its recursion
limit, and "\\ud800"-style escapes that leave a lone surrogate, which has no
UTF-8 form and would fail later in a file name, an environment or a log.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

from kgd.web.errors import HTTPError


def read_json_object(request: IRequest) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HTTPError(400, "Invalid JSON in body of request") from None
    except RecursionError:
        raise HTTPError(400, "JSON in body of request is nested too deeply") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "The body of the request must be a JSON object")
    _check_unicode(body)
    return body


def _check_unicode(value: Any) -> None:
    """Refuse a parsed body with a string that has no UTF-8 encoding.

    Re-encoding is one C-speed pass over a body that already fit the size
    limit, and checks keys and values at any depth without a Python walk.
    """
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(400, "JSON in body of request contains an unpaired surrogate") from None
    except RecursionError:
        raise HTTPError(400, "JSON in body of request is nested too deeply") from None


def json_response(request: IRequest, body: Any, status: int = 200) -> bytes:
    """Serialise ``body`` as the JSON response with ``status``."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body).encode("utf-8")
