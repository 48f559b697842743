"""The body of ``GET /_api/spec/swagger.json``, without doing I/O.

With annotated cells the spec is generated as the reference gateway does:
Swagger 2.0, ``info.version`` ``0.0.0``, ``info.title`` the notebook's file
name up to its first dot, one path per endpoint in notebook order with its
``:name`` parameters kept as written (without base_url), lower-case verbs,
and a single ``200 Success`` response per operation.  kgd adds a
``parameters`` list (``in: path``, required strings) to operations whose
path has parameters (the reference never documented them, issue #326);
parameter-free specs are byte-for-byte the reference's.

With the swagger-cell parser the user's spec is returned verbatim, except
that a missing ``info.title`` is filled in the same way the reference does.
"""

from __future__ import annotations

import copy
import json
import posixpath
from typing import Any

from .annotations import Endpoint, Endpoints

__all__ = ["default_title", "swagger_json", "swagger_spec"]


def default_title(notebook_path: str) -> str:
    """The API title for *notebook_path*: its base name up to the first dot.

    A name starting with a dot is kept whole, as in the reference, and the
    path is not URL-decoded (``weirdly%20named#notebook.ipynb`` gives
    ``weirdly%20named#notebook``).
    """
    basename = posixpath.basename(notebook_path)
    return basename.split(".")[0] if basename.find(".") > 0 else basename


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {"responses": {"200": {"description": "Success"}}}
    names = list(dict.fromkeys(endpoint.template.params))
    if names:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "type": "string"} for name in names
        ]
    return operation


def swagger_spec(endpoints: Endpoints, notebook_path: str) -> dict[str, Any]:
    """The spec as a dict (a fresh copy: callers may change it freely)."""
    if endpoints.spec is not None:
        spec = copy.deepcopy(dict(endpoints.spec))
        info = spec.get("info")
        if isinstance(info, dict) and "title" not in info:
            info["title"] = default_title(notebook_path)
        return spec
    return {
        "swagger": "2.0",
        "paths": {
            endpoint.path: {verb.lower(): _operation(endpoint) for verb in endpoint.methods}
            for endpoint in endpoints.in_notebook_order()
        },
        "info": {"version": "0.0.0", "title": default_title(notebook_path)},
    }


def swagger_json(endpoints: Endpoints, notebook_path: str) -> str:
    """The spec serialised as the response body (``application/json``).

    Build it once at startup: the reference caches it for the process life.
    """
    return json.dumps(swagger_spec(endpoints, notebook_path))
