"""kgd's OpenAPI document: valid, served in both forms, and in agreement with the routes both ways."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from openapi_spec_validator import validate
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial import unittest

from kgd.gateway import Gateway
from kgd.kernels.specs import KernelSpecs
from kgd.options import default_config
from kgd.personalities.jupyter_websocket import openapi
from kgd.personalities.jupyter_websocket.rest import KernelsAPI
from kgd.personalities.jupyter_websocket.sessions import SessionsAPI
from kgd.service import build_site
from kgd.web.ops import ops_mounts
from tests.web.test_ops import FakeKernels

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
ERROR_REF = "#/components/schemas/Error"


def klein_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: ``<path:resource>`` and ``<kernel_id>`` become ``{...}``."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def served_operations(gateway: Gateway) -> set[tuple[str, str]]:
    """(path, method) of every route kgd serves for jupyter-websocket: its Klein app and the operator's mounts."""
    operations = set()
    apps = [("", KernelsAPI.app), ("/api/sessions", SessionsAPI.app)]
    for prefix, app in apps:
        for rule in app.url_map.iter_rules():
            for method in rule.methods or ():
                if method not in ("HEAD", "OPTIONS"):
                    operations.add(((prefix + klein_path(rule.rule)).rstrip("/") or "/", method.lower()))
    for mount in ops_mounts(gateway):
        operations.add(("/" + "/".join(mount.prefix), "get"))
    return operations


def documented_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item if method in METHODS}


class DocumentTests(unittest.TestCase):
    """The document itself."""

    def setUp(self) -> None:
        self.spec = openapi.document()
        self.gateway = Gateway(FakeKernels(), KernelSpecs(), reactor=Clock())  # type: ignore[arg-type]

    def test_valid_openapi(self) -> None:
        """The document validates as OpenAPI 3.0."""
        validate(self.spec)

    def test_every_route_is_documented(self) -> None:
        """Each route kgd serves (kernels, kernelspecs, sessions, channels, probes, metrics) is in the document."""
        missing = served_operations(self.gateway) - documented_operations(self.spec)
        self.assertEqual(missing, set())

    def test_every_documented_operation_is_served(self) -> None:
        """Each path and method in the document is a route kgd serves (nothing promised that is not there)."""
        extra = documented_operations(self.spec) - served_operations(self.gateway)
        self.assertEqual(extra, set())

    def test_paths_include_api(self) -> None:
        """Paths are written with their /api prefix (the reference's spec left it out, issue #407)."""
        self.assertIn("/api/kernels/{kernel_id}", self.spec["paths"])
        self.assertNotIn("/kernels", self.spec["paths"])

    def test_protected_operations_document_401(self) -> None:
        """Every operation that needs the token lists 401; public ones (probes, the document) do not need it."""
        public = set()
        for path, item in self.spec["paths"].items():
            for method, operation in item.items():
                if method not in METHODS:
                    continue
                if operation.get("security") == []:
                    public.add(path)
                else:
                    self.assertIn("401", operation["responses"], f"{method} {path}")
        self.assertEqual(public, {"/api/swagger.json", "/api/swagger.yaml", "/healthz", "/readyz"})

    def test_errors_have_the_error_schema(self) -> None:
        """Every 4xx/5xx response (but the readiness 503, which reports checks) is the {reason, message} Error."""
        responses = self.spec["components"]["responses"]
        for path, item in self.spec["paths"].items():
            for method, operation in item.items():
                if method not in METHODS:
                    continue
                for status, response in operation["responses"].items():
                    if int(status) < 400 or path == "/readyz":
                        continue
                    if "$ref" in response:
                        response = responses[response["$ref"].rsplit("/", 1)[1]]
                    schema = response["content"]["application/json"]["schema"]
                    self.assertEqual(schema, {"$ref": ERROR_REF}, f"{method} {path} {status}")
        self.assertEqual(self.spec["components"]["schemas"]["Error"]["required"], ["reason", "message"])


class ServedTests(unittest.TestCase):
    """The two served forms, through the gateway's policies."""

    def get(self, path: str, base_url: str = "/") -> Any:
        settings = default_config(auth_token="s3cret", base_url=base_url)
        gateway = Gateway(FakeKernels(), KernelSpecs(), reactor=Clock(), base_url=base_url)  # type: ignore[arg-type]
        treq = StubTreq(build_site(settings, gateway).resource)
        response = self.successResultOf(treq.get("http://127.0.0.1" + path))
        return response, self.successResultOf(response.content())

    def test_json_without_token(self) -> None:
        """/api/swagger.json is public, JSON, and the document with servers set to the base URL."""
        response, body = self.get("/api/swagger.json")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(json.loads(body), openapi.document("/"))

    def test_yaml_without_token(self) -> None:
        """/api/swagger.yaml is public, served as application/yaml, and says the same as the JSON form."""
        response, body = self.get("/kg/api/swagger.yaml", base_url="/kg/")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/yaml"])
        spec = yaml.safe_load(body)
        self.assertEqual(spec, openapi.document("/kg/"))
        self.assertEqual(spec["servers"], [{"url": "/kg"}])
