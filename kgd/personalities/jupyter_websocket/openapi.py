"""kgd's OpenAPI document, served as ``/api/swagger.json`` and ``/api/swagger.yaml``.

The document is a data file written by hand (``openapi.yaml`` beside this
module, shipped as package data) and checked by the test suite: every path
and method in it is a route of kgd and every route is in it, and a
schemathesis run against the live daemon finds no status code it does not
list.  Paths include ``/api``; the ``servers`` entry is filled in when
served, so a client joins the daemon's own base URL to them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

YAML_CONTENT_TYPE = b"application/yaml"


@lru_cache(maxsize=1)
def _document_text() -> str:
    return resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")


def document(base_url: str = "/") -> dict[str, Any]:
    """The OpenAPI document as data, with ``servers`` naming ``base_url``."""
    spec = yaml.safe_load(_document_text())
    spec["servers"] = [{"url": base_url.rstrip("/") or "/"}]
    return spec


def as_json(base_url: str = "/") -> bytes:
    """The document as JSON."""
    return json.dumps(document(base_url), indent=1).encode("utf-8")


def as_yaml(base_url: str = "/") -> bytes:
    """The document as YAML, keys in the order written."""
    return yaml.safe_dump(document(base_url), sort_keys=False, allow_unicode=True).encode("utf-8")
