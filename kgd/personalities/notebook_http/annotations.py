"""Discover the HTTP API that a notebook declares, without doing any I/O.

In notebook-http mode every annotated code cell of the seed notebook becomes
the handler of one HTTP verb on one path, and every other code cell seeds the
kernels of the pool.  This module turns a notebook into an immutable
:class:`Endpoints` description that the route layer can consult on every
request: :meth:`Endpoints.match` answers *which code to run* or *404* or
*405 with Allow* without touching a kernel.

Two annotation styles are understood, mirroring the reference gateway's two
cell parsers:

``"annotations"`` (the default, reference ``cell.parser``)
    The first line of a code cell is ``{prefix} VERB /path`` (``VERB`` one of
    ``GET PUT POST DELETE``, upper case, at least one blank after the prefix).
    ``{prefix} ResponseInfo VERB /path`` marks the companion cell that prints
    the response status and headers.  Cells sharing verb and path are joined
    as ``source + "\\n"`` in notebook order.

``"swagger"`` (reference ``swagger.parser``, section 3.8 of the inventory)
    A cell holding a fenced JSON block with a ``"swagger"`` key is the spec;
    code cells start with ``{prefix} operationId: <id>`` (or
    ``{prefix} ResponseInfo operationId: <id>``) and the route path is the
    spec path plus ``/:<name>`` for every named parameter of the operation.
    The reference keeps the spec's lower-case verb keys and compares them to
    the upper-case request method, so it answers 405 to everything; here the
    verbs are normalised to upper case so requests are answered.

Path templates use ``:name`` for parameters.  Where this module deliberately
differs from the reference (each choice makes a request match the path the
author wrote instead of failing at startup or matching by accident):

* Literal text of a path is *escaped*, not used as a raw regex: in the
  reference ``/a.b`` also matches ``/aXb`` and ``/x?`` matches ``/x``, and an
  invalid regex or a parameter name that is not an identifier crashes
  startup.  Parameters are captured by position, so any name works.
* Paths are compared in a canonical percent-encoded form, so a literal with a
  space or non-ASCII text (``/with space``) can actually be requested, and
  ``%41`` matches ``A``.  Parameter values are percent-decoded.
* The comment prefix is escaped before being put into a regex.
* The annotation must sit on the first line: the reference's ``\\s+`` also
  crosses a newline, so ``#\\nGET /x`` was an endpoint; here it is not.
* When several routes match a path, the first one (in routing order) that
  supports the method wins; the reference stops at the first route matching
  the path and answers 405 even if a later route has the verb.
* Only code cells count, in both the routes and (see :mod:`.swagger`) the
  generated spec; the reference's spec also listed annotated markdown cells
  that were never routed.

Routing order is the reference's: sort key :func:`first_path_param_index`,
descending, ties in notebook order.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Union
from urllib.parse import quote, unquote

from kgd.kernels.kernel_request import notebook_language

__all__ = [
    "DEFAULT_COMMENT_PREFIXES",
    "NO_ENDPOINTS_MESSAGE",
    "VERBS",
    "canonical_path",
    "canonical_segments",
    "Endpoint",
    "Endpoints",
    "Match",
    "MethodNotAllowed",
    "NoEndpointsError",
    "NotFound",
    "NOT_FOUND",
    "ParserMode",
    "PathTemplate",
    "comment_prefix_for",
    "first_path_param_index",
    "parse_notebook",
]

#: The HTTP verbs a cell may be annotated with, as in the reference.
VERBS: tuple[str, ...] = ("GET", "PUT", "POST", "DELETE")

#: Message of the startup failure when a notebook declares no endpoint; it is
#: the reference gateway's text, so operators' log searches keep working.
NO_ENDPOINTS_MESSAGE = (
    "No endpoints were discovered. Check your notebook to make sure your cells "
    "are annotated correctly."
)

#: Single-line comment token by ``metadata.language_info.name`` (lower case).
#: ``None`` is the fallback.  The reference ships only ``{"scala": "//",
#: None: "#"}``; the extra entries spare users of common kernels a config
#: change and never alter a language the reference already handled.
DEFAULT_COMMENT_PREFIXES: Mapping[str | None, str] = {
    None: "#",
    "scala": "//",
    "java": "//",
    "javascript": "//",
    "typescript": "//",
    "c": "//",
    "c++": "//",
    "cpp": "//",
    "csharp": "//",
    "c#": "//",
    "go": "//",
    "rust": "//",
    "kotlin": "//",
    "swift": "//",
    "groovy": "//",
    "sql": "--",
    "haskell": "--",
    "lua": "--",
    "matlab": "%",
    "octave": "%",
    "clojure": ";",
}

ParserMode = Literal["annotations", "swagger"]
SortKey = Callable[[str], Any]
#: A notebook: an nbformat ``NotebookNode`` (or any mapping with ``cells``),
#: or just its cells as ``(cell_type, source)`` pairs.
NotebookLike = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]

# Characters left as they are in a canonical path segment: RFC 3986 pchar
# minus the unreserved set that ``quote`` always keeps.
_SEGMENT_SAFE = "!$&'()*+,;=:@"
# The reference's parameter token: a colon and everything up to "/" or blank.
_PARAM_TOKEN = re.compile(r":([^/\s]*)")
# Blanks that do not end a line: the annotation lives on the first line.
_BLANKS = r"[^\S\r\n]"


class NoEndpointsError(RuntimeError):
    """The notebook declares no endpoint, so notebook-http cannot start."""

    def __init__(self) -> None:
        super().__init__(NO_ENDPOINTS_MESSAGE)


def first_path_param_index(template: str) -> int:
    """Segment depth of the first ``:`` in *template*; ``sys.maxsize`` if none.

    This is the reference's default routing sort key (sorted descending), so
    constant paths come first, then paths whose first parameter sits deepest.
    ``/foo/:bar`` gives 1, ``/foo/quo/:bar`` gives 2.
    """
    colon = template.find(":")
    if colon < 0:
        return sys.maxsize
    return template.count("/", 0, colon) - 1


def comment_prefix_for(
    language: str | None, overrides: Mapping[str | None, str] | None = None
) -> str:
    """The comment token for a notebook language.

    *overrides* (the personality's ``comment_prefix`` setting) is merged over
    :data:`DEFAULT_COMMENT_PREFIXES`; an exact key wins over the lower-cased
    one, and unknown languages get the ``None`` entry (``#`` by default).
    """
    table: dict[str | None, str] = {**DEFAULT_COMMENT_PREFIXES, **(overrides or {})}
    if language in table:
        return table[language]
    if language is not None and language.lower() in table:
        return table[language.lower()]
    return table.get(None, "#")


def canonical_path(path: str | bytes) -> str:
    """Percent-encode each segment of *path* the same way every time.

    Path templates go through this, so ``%7e``, ``%7E`` and ``~`` compare
    equal and a literal ``/with space`` matches the request ``/with%20space``.
    An encoded ``/`` (``%2F``) stays encoded, so it never splits a segment.
    Undecodable bytes become U+FFFD rather than an error: a path can never
    make routing raise.
    """
    if isinstance(path, bytes):
        path = path.decode("utf-8", errors="replace")
    return canonical_segments(unquote(segment, errors="replace") for segment in path.split("/"))


def canonical_segments(segments: Iterable[str]) -> str:
    """Decoded path segments joined in the canonical form templates are compiled to."""
    return "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in segments)


@dataclass(frozen=True)
class PathTemplate:
    """A compiled ``/literal/:param`` path template.

    ``regex`` works on :func:`canonical_path` output and has one positional
    group per parameter, named in ``params`` (by position, so names need not
    be identifiers and duplicates cannot break compilation).
    """

    template: str
    regex: re.Pattern[str]
    params: tuple[str, ...]

    @classmethod
    def compile(cls, template: str) -> PathTemplate:
        """Compile *template*; never raises, whatever the text.

        ``:name`` (name up to the next ``/`` or blank, as the reference reads
        it) captures one non-empty segment part; a bare ``:`` stays literal.
        """
        pieces: list[str] = []
        params: list[str] = []
        position = 0
        for token in _PARAM_TOKEN.finditer(template):
            if not token.group(1):
                continue
            pieces.append(re.escape(canonical_path(template[position : token.start()])))
            pieces.append("([^/]+)")
            params.append(token.group(1))
            position = token.end()
        pieces.append(re.escape(canonical_path(template[position:])))
        return cls(template, re.compile("".join(pieces)), tuple(params))

    def match(self, path: str | bytes) -> dict[str, str] | None:
        """Decoded parameters if *path* (raw, no query) matches, else ``None``.

        The whole path must match, so a trailing slash is significant, as in
        the reference.  With a repeated parameter name the last value wins.
        """
        return self._match_canonical(canonical_path(path))

    def _match_canonical(self, path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in zip(self.params, found.groups())}


@dataclass(frozen=True)
class Endpoint:
    """One routed path and the code to run for each of its verbs.

    ``sources`` and ``response_sources`` map an upper-case verb to the
    concatenated cell source; ``order`` is the position of the path's first
    cell among the endpoints, which the generated Swagger spec follows.
    """

    path: str
    template: PathTemplate
    sources: Mapping[str, str]
    response_sources: Mapping[str, str]
    order: int

    @property
    def methods(self) -> tuple[str, ...]:
        """Verbs this path answers, in notebook order (for an Allow header)."""
        return tuple(self.sources)


@dataclass(frozen=True)
class Match:
    """A request resolved to an endpoint: run ``source`` (then
    ``response_source`` if there is one) with ``path_params`` in REQUEST."""

    endpoint: Endpoint
    method: str
    path_params: Mapping[str, str]

    @property
    def source(self) -> str:
        """The endpoint code for this method."""
        return self.endpoint.sources[self.method]

    @property
    def response_source(self) -> str | None:
        """The ResponseInfo code for this method, if the notebook has one."""
        return self.endpoint.response_sources.get(self.method)


@dataclass(frozen=True)
class NotFound:
    """No endpoint path matches the request path: answer 404."""


#: The only :class:`NotFound` value :meth:`Endpoints.match` returns.
NOT_FOUND = NotFound()


@dataclass(frozen=True)
class MethodNotAllowed:
    """The path exists but not for this method: answer 405 with ``Allow``."""

    allowed: tuple[str, ...]


@dataclass(frozen=True)
class Endpoints:
    """Everything notebook-http needs from the seed notebook.

    ``endpoints`` is in routing order; ``seed_cells`` are the code cells every
    pool kernel runs at startup, in notebook order; ``spec`` is the user's
    Swagger document in swagger mode (``None`` otherwise); ``warnings`` are
    human-readable notes for the startup log (unreferenced operations,
    orphan ResponseInfo cells...).
    """

    endpoints: tuple[Endpoint, ...]
    seed_cells: tuple[str, ...]
    language: str | None
    comment_prefix: str
    mode: ParserMode = "annotations"
    spec: Mapping[str, Any] | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        """True when the notebook declares no endpoint at all."""
        return not self.endpoints

    def require(self) -> Endpoints:
        """Return self, or raise :class:`NoEndpointsError` if :attr:`empty`.

        Startup calls this so the process fails with the reference's message.
        """
        if self.empty:
            raise NoEndpointsError()
        return self

    def in_notebook_order(self) -> tuple[Endpoint, ...]:
        """Endpoints by first appearance in the notebook (Swagger path order)."""
        return tuple(sorted(self.endpoints, key=lambda endpoint: endpoint.order))

    def match(self, method: str, segments: Sequence[str]) -> Match | NotFound | MethodNotAllowed:
        """Resolve a request from its path *segments* below the mount, already percent-decoded.

        The gateway decodes the path once (``kgd.web.resource.path_segments``)
        and checks the token on those segments; matching them here, not a
        second reading of the raw path, keeps routing and auth in agreement.
        The first endpoint in routing order whose template matches and which
        has the verb wins.  If templates match but none has the verb, the
        answer is :class:`MethodNotAllowed` with the union of their verbs;
        if none matches, :data:`NOT_FOUND`.  The verb comparison ignores case.
        """
        if isinstance(segments, (str, bytes)):
            raise TypeError("Endpoints.match takes decoded path segments, not a path")
        verb = method.upper()
        canonical = "/" + canonical_segments(segments)
        allowed: list[str] = []
        for endpoint in self.endpoints:
            params = endpoint.template._match_canonical(canonical)
            if params is None:
                continue
            if verb in endpoint.sources:
                return Match(endpoint, verb, params)
            allowed.extend(v for v in endpoint.sources if v not in allowed)
        if allowed:
            return MethodNotAllowed(tuple(allowed))
        return NOT_FOUND


def parse_notebook(
    notebook: NotebookLike,
    *,
    mode: ParserMode = "annotations",
    language: str | None = None,
    comment_prefixes: Mapping[str | None, str] | None = None,
    sort_key: SortKey = first_path_param_index,
) -> Endpoints:
    """Describe the API declared by *notebook*.

    *notebook* is an nbformat notebook or a sequence of ``(cell_type,
    source)`` pairs.  *language* defaults to the notebook's
    language (:func:`kgd.kernels.kernel_request.notebook_language`) and selects the comment prefix through
    *comment_prefixes* (see :func:`comment_prefix_for`).  *sort_key* orders
    the routes (descending, stable), as the reference's ``sort_func``.

    Never raises because of cell text: a notebook without endpoints gives an
    :class:`Endpoints` whose :attr:`~Endpoints.empty` is true.
    """
    cells = _cells(notebook)
    if language is None and isinstance(notebook, Mapping):
        language = notebook_language(notebook)
    prefix = comment_prefix_for(language, comment_prefixes)
    if mode == "swagger":
        return _parse_swagger(cells, language, prefix, sort_key)
    return _parse_annotations(cells, language, prefix, sort_key)


# --------------------------------------------------------------------------
# Helpers shared by both modes


def _cells(notebook: NotebookLike) -> list[tuple[str, str]]:
    """``(cell_type, source)`` pairs, with list-of-lines sources joined."""
    if isinstance(notebook, Mapping):
        raw: Iterable[Any] = (
            (cell.get("cell_type", ""), cell.get("source", ""))
            for cell in notebook.get("cells", ())
            if isinstance(cell, Mapping)
        )
    else:
        raw = notebook
    cells = []
    for cell_type, source in raw:
        if not isinstance(source, str):
            source = "".join(str(line) for line in source)
        cells.append((str(cell_type), source))
    return cells


def _add_source(table: dict[str, dict[str, str]], path: str, verb: str, source: str) -> None:
    """Append a cell to path+verb the way the reference does (``src + "\\n"``)."""
    verbs = table.setdefault(path, {})
    verbs[verb] = verbs.get(verb, "") + source + "\n"


def _build(
    sources: dict[str, dict[str, str]],
    responses: dict[str, dict[str, str]],
    sort_key: SortKey,
) -> tuple[tuple[Endpoint, ...], list[str]]:
    """Endpoints in routing order, plus warnings for orphan ResponseInfo cells."""
    endpoints = [
        Endpoint(
            path,
            PathTemplate.compile(path),
            MappingProxyType(verbs),
            MappingProxyType(
                {v: code for v, code in responses.get(path, {}).items() if v in verbs}
            ),
            order,
        )
        for order, (path, verbs) in enumerate(sources.items())
    ]
    endpoints.sort(key=lambda endpoint: sort_key(endpoint.path), reverse=True)
    warnings = [
        f"ResponseInfo for {verb} {path} has no matching endpoint cell and is ignored"
        for path, verbs in responses.items()
        for verb in verbs
        if verb not in sources.get(path, {})
    ]
    for endpoint in endpoints:
        repeated = {p for p in endpoint.template.params if endpoint.template.params.count(p) > 1}
        if repeated:
            names = ", ".join(sorted(repeated))
            warnings.append(
                f"Path {endpoint.path} repeats parameter(s) {names}; the last value is used"
            )
    return tuple(endpoints), warnings


# --------------------------------------------------------------------------
# "annotations" mode


def _parse_annotations(
    cells: Sequence[tuple[str, str]], language: str | None, prefix: str, sort_key: SortKey
) -> Endpoints:
    verbs = "|".join(VERBS)
    endpoint_re = re.compile(rf"{re.escape(prefix)}{_BLANKS}+({verbs}){_BLANKS}+(/.*)")
    response_re = re.compile(
        rf"{re.escape(prefix)}{_BLANKS}+ResponseInfo{_BLANKS}+({verbs}){_BLANKS}+(/.*)"
    )
    sources: dict[str, dict[str, str]] = {}
    responses: dict[str, dict[str, str]] = {}
    seeds: list[str] = []
    for cell_type, source in cells:
        if cell_type != "code":
            continue
        if found := endpoint_re.match(source):
            _add_source(sources, found.group(2).strip(), found.group(1), source)
        elif found := response_re.match(source):
            _add_source(responses, found.group(2).strip(), found.group(1), source)
        else:
            seeds.append(source)
    endpoints, warnings = _build(sources, responses, sort_key)
    return Endpoints(
        endpoints, tuple(seeds), language, prefix, "annotations", None, tuple(warnings)
    )


# --------------------------------------------------------------------------
# "swagger" mode


def _swaggerlet(source: str) -> dict[str, Any] | None:
    """The JSON object with a ``swagger`` key in the cell's first fenced block.

    Without a fence the whole cell is tried, as the reference does.
    """
    lines = source.splitlines()
    opening = next((i for i, line in enumerate(lines) if line.startswith("```")), None)
    if opening is not None:
        rest = lines[opening + 1 :]
        closing = next((i for i, line in enumerate(rest) if line.startswith("```")), len(rest))
        lines = rest[:closing]
    try:
        document = json.loads("\n".join(lines))
    except (ValueError, RecursionError):
        return None
    if isinstance(document, dict) and "swagger" in document:
        return document
    return None


def _operations(spec: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(path, verb_key, operation)`` for every operation with an operationId."""
    paths = spec.get("paths")
    if not isinstance(paths, Mapping):
        return []
    found = []
    for path, item in paths.items():
        if not isinstance(path, str) or not isinstance(item, Mapping):
            continue
        for verb, operation in item.items():
            if isinstance(operation, Mapping) and isinstance(operation.get("operationId"), str):
                found.append((path, str(verb), operation))
    return found


def _route_path(path: str, operation: Mapping[str, Any]) -> str:
    """Spec path plus ``/:name`` for each named parameter, as the reference.

    Like the reference this appends *every* named parameter (query and body
    ones too), because that is the URL shape existing clients call.
    """
    parameters = operation.get("parameters")
    if not isinstance(parameters, list):
        return path
    names = [
        p["name"] for p in parameters if isinstance(p, Mapping) and isinstance(p.get("name"), str)
    ]
    return path + "".join(f"/:{name}" for name in names)


def _parse_swagger(
    cells: Sequence[tuple[str, str]], language: str | None, prefix: str, sort_key: SortKey
) -> Endpoints:
    operation_re = re.compile(rf"{re.escape(prefix)}{_BLANKS}*operationId:{_BLANKS}*(.*)")
    response_re = re.compile(
        rf"{re.escape(prefix)}{_BLANKS}*ResponseInfo{_BLANKS}+operationId:{_BLANKS}*(.*)"
    )
    spec: dict[str, Any] = {}
    operation_sources: dict[str, str] = {}
    response_by_id: dict[str, str] = {}
    seeds: list[str] = []
    for cell_type, source in cells:
        if (swaggerlet := _swaggerlet(source)) is not None:
            spec.update(swaggerlet)
        if cell_type != "code":
            continue
        if found := operation_re.match(source):
            op_id = found.group(1).strip()
            operation_sources[op_id] = operation_sources.get(op_id, "") + source + "\n"
        elif found := response_re.match(source):
            op_id = found.group(1).strip()
            response_by_id[op_id] = response_by_id.get(op_id, "") + source + "\n"
        else:
            seeds.append(source)

    warnings: list[str] = []
    if not spec:
        warnings.append("No Swagger documentation found")
    elif not isinstance(spec.get("paths"), Mapping):
        warnings.append("No paths documented in Swagger documentation")
    sources: dict[str, dict[str, str]] = {}
    responses: dict[str, dict[str, str]] = {}
    declared: list[str] = []
    for path, verb_key, operation in _operations(spec):
        op_id = operation["operationId"].strip()
        declared.append(op_id)
        if op_id not in operation_sources:
            warnings.append(f"Operation {op_id} was declared but not referenced in a cell")
            continue
        verb = verb_key.upper()
        if verb not in VERBS:
            warnings.append(f"Operation {op_id} uses unsupported verb {verb_key}; not routed")
            continue
        route = _route_path(path, operation)
        sources.setdefault(route, {})[verb] = operation_sources[op_id]
        if op_id in response_by_id:
            responses.setdefault(route, {})[verb] = response_by_id[op_id]
    warnings.extend(
        f"Operation {op_id} was referenced in a cell but not declared"
        for op_id in operation_sources
        if op_id not in declared
    )
    endpoints, build_warnings = _build(sources, responses, sort_key)
    return Endpoints(
        endpoints,
        tuple(seeds),
        language,
        prefix,
        "swagger",
        spec or None,
        tuple(warnings + build_warnings),
    )
