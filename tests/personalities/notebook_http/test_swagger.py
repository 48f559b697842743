"""Tests for kgd.personalities.notebook_http.swagger: /_api/spec/swagger.json."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from twisted.trial.unittest import SynchronousTestCase

from kgd.personalities.notebook_http.annotations import parse_notebook
from kgd.personalities.notebook_http.swagger import default_title, swagger_json, swagger_spec

RESOURCES = Path(__file__).parents[2] / "resources"


def load(name: str) -> nbformat.NotebookNode:
    """Read a test notebook from tests/resources."""
    return nbformat.read(RESOURCES / name, as_version=4)


class AnnotationSpecTests(SynchronousTestCase):
    """Specs generated from annotated cells."""

    def test_simple_api_exact(self) -> None:
        """simple_api's spec equals the reference test's expected JSON."""
        path = str(RESOURCES / "simple_api.ipynb")
        body = swagger_json(parse_notebook(load("simple_api.ipynb")), path)
        self.assertEqual(
            json.loads(body),
            {
                "info": {"version": "0.0.0", "title": "simple_api"},
                "paths": {
                    "/name": {
                        "get": {"responses": {"200": {"description": "Success"}}},
                        "post": {"responses": {"200": {"description": "Success"}}},
                    }
                },
                "swagger": "2.0",
            },
        )
        self.assertEqual(
            body,
            '{"swagger": "2.0", "paths": {"/name": {"get": {"responses": {"200": {"description": '
            '"Success"}}}, "post": {"responses": {"200": {"description": "Success"}}}}}, '
            '"info": {"version": "0.0.0", "title": "simple_api"}}',
        )

    def test_paths_in_notebook_order_with_params(self) -> None:
        """Paths follow cell order (not routing order), keep `:name`, and list path parameters."""
        cells = [("code", "# GET /:id"), ("code", "# PUT /fixed"), ("markdown", "# GET /md"), ("code", "# DELETE /:id")]
        spec = swagger_spec(parse_notebook(cells), "x.ipynb")
        self.assertEqual(list(spec["paths"]), ["/:id", "/fixed"])
        parameter = {"name": "id", "in": "path", "required": True, "type": "string"}
        self.assertEqual(list(spec["paths"]["/:id"]), ["get", "delete"])
        self.assertEqual(spec["paths"]["/:id"]["get"]["parameters"], [parameter])
        self.assertNotIn("parameters", spec["paths"]["/fixed"]["put"])

    def test_default_title(self) -> None:
        """Title is the base name up to the first dot, not URL-decoded; dotfiles keep their name."""
        self.assertEqual(default_title("/a/b/weirdly%20named#notebook.ipynb"), "weirdly%20named#notebook")
        self.assertEqual(default_title("http://host/x/api.v2.ipynb"), "api")
        self.assertEqual(default_title(".hidden"), ".hidden")
        self.assertEqual(default_title("Some New Title"), "Some New Title")

    def test_unknown_kernel_spec(self) -> None:
        """unknown_kernel.ipynb yields a spec with its one odd path."""
        spec = swagger_spec(parse_notebook(load("unknown_kernel.ipynb")), "unknown_kernel.ipynb")
        self.assertEqual(list(spec["paths"]), ["/fakeprint 'I am not a real lang!'"])


class SwaggerCellSpecTests(SynchronousTestCase):
    """Specs from the swagger-cell parser are the user's, verbatim."""

    def test_verbatim(self) -> None:
        """swagger_api.ipynb's spec is returned unchanged."""
        notebook = load("swagger_api.ipynb")
        endpoints = parse_notebook(notebook, mode="swagger")
        source = notebook.cells[0].source
        declared = json.loads(source[source.index("{") : source.rindex("}") + 1])
        self.assertEqual(swagger_spec(endpoints, "swagger_api.ipynb"), declared)

    def test_title_filled_and_copy(self) -> None:
        """A missing info.title is filled in; callers get a copy they may change."""
        cell = '```\n{"swagger": "2.0", "info": {"version": "1"}, "paths": {"/a": {"get": {"operationId": "a"}}}}\n```'
        endpoints = parse_notebook([("markdown", cell), ("code", "# operationId: a")], mode="swagger")
        spec = swagger_spec(endpoints, "dir/my.api.ipynb")
        self.assertEqual(spec["info"], {"version": "1", "title": "my"})
        spec["paths"].clear()
        self.assertIn("/a", swagger_spec(endpoints, "x")["paths"])

    def test_existing_title_kept(self) -> None:
        """A title in the spec is never replaced."""
        endpoints = parse_notebook(load("swagger_api.ipynb"), mode="swagger")
        self.assertEqual(swagger_spec(endpoints, "other.ipynb")["info"]["title"], "Swagger cell API")
