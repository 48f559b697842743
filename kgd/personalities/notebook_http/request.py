"""Build the ``REQUEST`` value a notebook endpoint sees, without doing I/O.

Before running an endpoint cell the gateway executes one statement that sets
``REQUEST`` in the kernel to a JSON *string*::

    {"body": ..., "args": {name: [values]}, "path": {name: value},
     "headers": {Name: value or [values]}}

:func:`build_request` makes that dict from the parts of an HTTP request,
:func:`request_json` serialises it, and :func:`assignment_code` wraps the text
in the kernel language's assignment statement.

Compatibility with the reference gateway, and the deliberate fixes:

* ``body`` by media type: ``application/json`` is parsed, *with or without
  parameters* (the reference left ``application/json; charset=utf-8`` as a
  string); form types give ``{field: [values]}`` with file parts dropped;
  anything else is the decoded text, ``""`` when empty.  A body the declared
  type cannot decode raises :class:`BadRequestBody` (kgd answers 400); the
  reference silently passed invalid JSON on as a string and answered 500 to
  undecodable bytes.
* ``args``: the query string, blank values dropped as tornado did.  When the
  gateway has a token, the ``token`` argument is removed: it authenticated
  the request to the gateway and is not the notebook's to see.  Without a
  configured token ``token`` is an ordinary argument and is kept.
* ``headers``: names in tornado's canonical case (``If-None-Match``,
  ``Etag``), repeats in a list.  ``Authorization`` is removed only when it
  carries the gateway token (``token <t>`` or ``Bearer <t>``), for the same
  reason; any other Authorization (Basic, an app's own bearer token) is the
  notebook API's business and is passed through, as the reference does.
  ``Cookie`` is passed through: the gateway never authenticates by cookie.
* The assignment is injection-proof for every kernel: see
  :func:`assignment_code`.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Union
from urllib.parse import parse_qsl

import multipart

from kgd.web.auth import authorization_token, same_token

__all__ = [
    "BadRequestBody",
    "HeaderPairs",
    "assignment_code",
    "build_request",
    "code_with_request",
    "canonical_header_name",
    "headers_to_dict",
    "media_type",
    "parse_body",
    "parse_query",
    "request_json",
]

JSON = "application/json"
FORM_URLENCODED = "application/x-www-form-urlencoded"
MULTIPART_FORM_DATA = "multipart/form-data"

#: Raw header pairs in arrival order; names and values as ``str`` or ``bytes``
#: (bytes are decoded as ISO-8859-1, the way tornado read them).
HeaderPairs = Iterable[tuple[Union[str, bytes], Union[str, bytes]]]


class BadRequestBody(ValueError):
    """The request body does not decode as its Content-Type says.

    The message says why, in words fit for a 400 response.
    """


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into its lower-case media type and parameters.

    A missing header is ``text/plain``, as in the reference.
    """
    if not content_type:
        return "text/plain", {}
    kind, params = multipart.parse_options_header(content_type)
    return kind.strip().lower(), {k.lower(): v for k, v in params.items()}


def _decode(body: bytes, charset: str | None, what: str) -> str:
    """Decode *body* with *charset* (UTF-8 by default) or raise BadRequestBody."""
    encoding = charset or "utf-8"
    try:
        codecs.lookup(encoding)
        return body.decode(encoding)
    except LookupError:
        raise BadRequestBody(f"unknown charset {encoding!r}") from None
    except (UnicodeDecodeError, ValueError):
        raise BadRequestBody(f"{what} is not valid {encoding} text") from None


def _parse_json(body: bytes, charset: str | None) -> Any:
    text = _decode(body, charset, "JSON body")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise BadRequestBody(f"invalid JSON body: {error}") from None


def _parse_urlencoded(body: bytes) -> dict[str, list[str]]:
    text = _decode(body, None, "form body")
    fields: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequestBody("form body is not valid percent-encoded UTF-8") from None
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


def _parse_multipart(body: bytes, params: Mapping[str, str]) -> dict[str, list[str]]:
    boundary = params.get("boundary")
    if not boundary:
        raise BadRequestBody("multipart/form-data without a boundary")
    fields: dict[str, list[str]] = {}
    segment: multipart.MultipartSegment | None = None
    chunks: list[bytes] = []
    try:
        with multipart.PushMultipartParser(boundary) as parser:
            for event in parser.parse(body):
                if isinstance(event, multipart.MultipartSegment):
                    segment, chunks = event, []
                elif event:
                    chunks.append(event)
                elif segment is not None and segment.filename is None and segment.name:
                    # Files are dropped, as the reference does; so are
                    # unnamed parts, which tornado skipped too.
                    value = _decode(b"".join(chunks), None, f"form field {segment.name!r}")
                    fields.setdefault(segment.name, []).append(value)
    except multipart.MultipartError as error:
        raise BadRequestBody(f"invalid multipart/form-data body: {error}") from None
    return fields


def parse_body(body: bytes, content_type: str | None) -> Any:
    """The ``REQUEST.body`` value for *body* sent as *content_type*.

    Empty bodies are ``""`` whatever the type (a GET with a JSON
    Content-Type and no body is common).  Raises only :class:`BadRequestBody`.
    """
    if not body:
        return ""
    kind, params = media_type(content_type)
    if kind == JSON:
        return _parse_json(body, params.get("charset"))
    if kind == FORM_URLENCODED:
        return _parse_urlencoded(body)
    if kind == MULTIPART_FORM_DATA:
        return _parse_multipart(body, params)
    return _decode(body, params.get("charset"), "body")


def parse_query(query: str | bytes, *, drop_token: bool = False) -> dict[str, list[str]]:
    """``REQUEST.args``: query arguments with all their values, in order.

    Blank values are dropped (``?a=&b=1`` gives only ``b``), as tornado's
    ``query_arguments`` did.  Undecodable escapes become U+FFFD: a query
    string never fails a request.  *drop_token* removes ``token``.
    """
    if isinstance(query, bytes):
        query = query.decode("utf-8", errors="replace")
    args: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=False, errors="replace"):
        if drop_token and name == "token":
            continue
        args.setdefault(name, []).append(value)
    return args


def canonical_header_name(name: str) -> str:
    """Tornado's header case: each ``-``-separated word capitalised.

    Notebooks written for the reference index ``REQUEST["headers"]`` with
    these names (``Content-Type``, ``If-None-Match``, ``Etag``).
    """
    return "-".join(word.capitalize() for word in name.split("-"))


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def headers_to_dict(headers: HeaderPairs) -> dict[str, str | list[str]]:
    """Header pairs as a dict; a repeated header becomes a list of values."""
    result: dict[str, str | list[str]] = {}
    for raw_name, raw_value in headers:
        name, value = canonical_header_name(_text(raw_name).strip()), _text(raw_value).strip()
        if name not in result:
            result[name] = value
        elif isinstance(result[name], list):
            result[name].append(value)  # type: ignore[union-attr]
        else:
            result[name] = [result[name], value]  # type: ignore[list-item]
    return result


def _carries_token(authorization: str, token: str) -> bool:
    """True if *authorization* presents the gateway's *token* (``token <t>`` or ``Bearer <t>``)."""
    presented = authorization_token(authorization)
    return presented is not None and same_token(presented, token)


def build_request(
    *,
    body: bytes = b"",
    query: str | bytes = "",
    headers: HeaderPairs = (),
    path_params: Mapping[str, str] | None = None,
    gateway_token: str | None = None,
) -> dict[str, Any]:
    """The ``REQUEST`` dict for one HTTP request.

    *query* is the raw query string (no ``?``), *headers* the raw pairs,
    *path_params* the decoded values from :meth:`Endpoints.match`.  The body
    is parsed by the first ``Content-Type`` header.  *gateway_token* is the
    gateway's auth token, if one is configured; it decides what is stripped
    (see the module docstring).  Raises only :class:`BadRequestBody`.
    """
    header_dict = headers_to_dict(headers)
    content_type = header_dict.get("Content-Type")
    if isinstance(content_type, list):
        content_type = content_type[0]
    if gateway_token:
        authorization = header_dict.get("Authorization")
        values = authorization if isinstance(authorization, list) else [authorization]
        kept = [v for v in values if v is not None and not _carries_token(v, gateway_token)]
        if authorization is not None and len(kept) != len(values):
            if not kept:
                del header_dict["Authorization"]
            else:
                header_dict["Authorization"] = kept if len(kept) > 1 else kept[0]
    return {
        "body": parse_body(body, content_type),
        "args": parse_query(query, drop_token=bool(gateway_token)),
        "path": dict(path_params or {}),
        "headers": header_dict,
    }


def request_json(request: Mapping[str, Any]) -> str:
    """The JSON text of *request*, as the reference sends it: ``json.dumps``
    defaults, so the text is pure ASCII and travels safely in any kernel."""
    return json.dumps(request)


# Characters escaped in a double-quoted literal: the quote, the backslash,
# every control character, the JavaScript line separators and lone surrogates
# (which only an escape can carry).  Everything else travels as itself.
_ALWAYS_ESCAPED = '"\\\\\x00-\x1f\x7f\u2028\u2029\ud800-\udfff'
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Languages whose double-quoted strings interpolate: "$x"/"${x}" or "#{x}".
# Escaping the sigil keeps request text from running as code there.
_INTERPOLATION_SIGILS = {
    "julia": "$",
    "kotlin": "$",
    "dart": "$",
    "groovy": "$",
    "php": "$",
    "ruby": "#",
    "crystal": "#",
    "elixir": "#",
    "coffeescript": "#",
}


def _escape_char(found: re.Match[str]) -> str:
    char = found.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char.isprintable():  # an interpolation sigil
        return "\\" + char
    return f"\\u{ord(char):04x}"


def _double_quoted(text: str, sigil: str = "") -> str:
    pattern = f"[{_ALWAYS_ESCAPED}{re.escape(sigil)}]"
    return '"' + re.sub(pattern, _escape_char, text) + '"'


def assignment_code(language: str | None, request_text: str) -> str:
    """The statement that sets ``REQUEST`` to *request_text* in the kernel.

    The forms are the reference's ``format_request`` ones, keyed on
    ``metadata.language_info.name``:

    * most languages: ``REQUEST = "<text as a JSON-style string literal>"``;
      Python's ``ast.literal_eval`` (and any JSON parser) of the right-hand
      side gives *request_text* back exactly;
    * ``perl``: ``my $REQUEST = '<text>'``;
    * ``bash``: ``REQUEST='<text>'``.

    Deliberate fix: the reference used double quotes for perl and bash too,
    so ``$(...)``, backticks or ``@{[...]}`` in a request body ran as code in
    the kernel.  Single quotes interpolate nothing there.  Likewise the ``$``
    of Julia/Kotlin-style and the ``#`` of Ruby-style interpolating strings
    are escaped.
    """
    name = (language or "").lower()
    if name == "perl":
        escaped = request_text.replace("\\", "\\\\").replace("'", "\\'")
        return f"my $REQUEST = '{escaped}'"
    if name == "bash":
        escaped = request_text.replace("'", "'\\''")
        return f"REQUEST='{escaped}'"
    return f"REQUEST = {_double_quoted(request_text, _INTERPOLATION_SIGILS.get(name, ''))}"


#: Languages whose kernels run ``<assignment>; <comment>`` as the assignment
#: followed by a comment, where ``;`` ends a statement and ``#`` starts a
#: line comment.
_INLINE_LANGUAGES = frozenset({"python"})


def code_with_request(language: str | None, request_text: str, source: str, comment_prefix: str) -> str | None:
    """The endpoint *source* with the ``REQUEST`` assignment put in front of it, or None.

    The kernel then sets ``REQUEST`` and runs the endpoint in one execution
    instead of two.  This is safe only where the result means exactly the
    same as the two executions: the source starts with its annotation
    comment (every endpoint and ResponseInfo cell does), so the assignment
    goes on that first line before a ``;`` and the comment keeps every line
    number, the last expression (the ``execute_result``) and cell-level
    syntax unchanged.  For languages not known to read it that way, None:
    send :func:`assignment_code` separately.
    """
    if (language or "").lower() not in _INLINE_LANGUAGES or comment_prefix != "#":
        return None
    if not source.startswith(comment_prefix):
        return None
    return f"{assignment_code(language, request_text)}; {source}"
