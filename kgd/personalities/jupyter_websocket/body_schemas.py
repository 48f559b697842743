"""Request bodies checked against the schemas the OpenAPI document publishes.

The document (``openapi.yaml``) is the contract clients and fuzzers read, so
the gateway validates bodies against that same text rather than a second
copy of the rules. OpenAPI 3.0 schemas differ from JSON Schema in two ways
that matter here: ``nullable`` and ``$ref`` into ``components``; both are
translated once, when a schema is first used, for ``jsonschema`` (already
installed as nbformat's dependency) to check.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonschema import Draft4Validator

from kgd.personalities.jupyter_websocket.openapi import document
from kgd.web.errors import HTTPError

_REF_PREFIX = "#/components/schemas/"


def _json_schema(schema: Any, components: dict[str, Any]) -> Any:
    """An OpenAPI schema as plain JSON Schema: refs inlined, nullable as a "null" type."""
    if isinstance(schema, list):
        return [_json_schema(item, components) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _json_schema(components[schema["$ref"].removeprefix(_REF_PREFIX)], components)
    converted = {key: _json_schema(value, components) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


@lru_cache(maxsize=None)
def _validator(name: str) -> Draft4Validator:
    components = document()["components"]["schemas"]
    return Draft4Validator(_json_schema(components[name], components))


def validate_body(name: str, body: Any) -> None:
    """Refuse a body that ``components/schemas/<name>`` does not allow: a 400 naming the field."""
    errors = sorted(_validator(name).iter_errors(body), key=lambda e: [str(part) for part in e.absolute_path])
    if not errors:
        return
    error = errors[0]
    where = "/".join(str(part) for part in error.absolute_path)
    raise HTTPError(400, f"{where}: {error.message}" if where else error.message)
