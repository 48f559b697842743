"""Tests for kgd.personalities.notebook_http.annotations: finding endpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kgd.web.resource import path_segments

from kgd.personalities.notebook_http.annotations import (
    NO_ENDPOINTS_MESSAGE,
    NOT_FOUND,
    Endpoints,
    Match,
    MethodNotAllowed,
    NoEndpointsError,
    PathTemplate,
    comment_prefix_for,
    first_path_param_index,
    parse_notebook,
)

RESOURCES = Path(__file__).parents[2] / "resources"


def at(path: str | bytes) -> tuple[str, ...]:
    """A raw request path as the gateway hands it to ``Endpoints.match``: decoded segments."""
    return path_segments(path.encode() if isinstance(path, str) else path)


def code(*sources: str) -> list[tuple[str, str]]:
    """Cells as (cell_type, source) pairs, all code."""
    return [("code", source) for source in sources]


def load(name: str) -> nbformat.NotebookNode:
    """Read a test notebook from tests/resources."""
    return nbformat.read(RESOURCES / name, as_version=4)


def routes(endpoints: Endpoints) -> list[str]:
    """Endpoint paths in routing order."""
    return [endpoint.path for endpoint in endpoints.endpoints]


class AnnotationParsingTests(SynchronousTestCase):
    """The `{prefix} VERB /path` annotation grammar."""

    def test_annotated_cell_is_endpoint(self) -> None:
        """A code cell whose first line is `# GET /yes` is an endpoint; plain code is a seed."""
        endpoints = parse_notebook(code("# GET /yes\nprint(1)", "no"))
        self.assertEqual(routes(endpoints), ["/yes"])
        self.assertEqual(endpoints.endpoints[0].sources, {"GET": "# GET /yes\nprint(1)\n"})
        self.assertEqual(endpoints.seed_cells, ("no",))

    def test_all_four_verbs(self) -> None:
        """GET, PUT, POST and DELETE are recognised on the same path."""
        endpoints = parse_notebook(code("# GET /x", "# PUT /x", "# POST /x", "# DELETE /x"))
        self.assertEqual(endpoints.endpoints[0].methods, ("GET", "PUT", "POST", "DELETE"))

    def test_not_endpoints(self) -> None:
        """No blank after the prefix, lower-case or unknown verbs, a leading blank,
        no leading slash, or the annotation on a later line: all are seed code."""
        sources = (
            "#GET /x",
            "# get /x",
            "# PATCH /x",
            " # GET /x",
            "# GET x",
            "print(1)\n# GET /x",
            "#\nGET /x",
        )
        endpoints = parse_notebook(code(*sources))
        self.assertTrue(endpoints.empty)
        self.assertEqual(endpoints.seed_cells, sources)

    def test_markdown_ignored(self) -> None:
        """A markdown cell containing `# GET /x` is neither an endpoint nor a seed."""
        endpoints = parse_notebook([("markdown", "# GET /x"), ("raw", "# GET /y")])
        self.assertTrue(endpoints.empty)
        self.assertEqual(endpoints.seed_cells, ())

    def test_path_is_stripped_but_keeps_inner_spaces(self) -> None:
        """The path runs to the end of the first line, stripped, spaces kept."""
        endpoints = parse_notebook(code("# GET /fakeprint 'I am not a real lang!'  \nmore"))
        self.assertEqual(routes(endpoints), ["/fakeprint 'I am not a real lang!'"])

    def test_concatenation(self) -> None:
        """Cells with the same verb and path join as `src + "\\n"` in notebook order."""
        endpoints = parse_notebook(
            code("# POST /foo/:bar", "# POST /foo/:bar", "# POST /foo", "ignored", "# GET /foo/:bar")
        )
        by_path = {e.path: e.sources for e in endpoints.endpoints}
        self.assertEqual(len(by_path), 2)
        self.assertEqual(by_path["/foo"], {"POST": "# POST /foo\n"})
        self.assertEqual(by_path["/foo/:bar"]["POST"], "# POST /foo/:bar\n# POST /foo/:bar\n")
        self.assertEqual(by_path["/foo/:bar"]["GET"], "# GET /foo/:bar\n")

    def test_response_info_concatenation(self) -> None:
        """ResponseInfo cells concatenate per verb+path and are not seeds."""
        endpoints = parse_notebook(
            code(
                "# POST /foo/:bar",
                "# POST /foo",
                "# GET /foo/:bar",
                "# ResponseInfo POST /foo/:bar",
                "# ResponseInfo POST /foo/:bar",
                "# ResponseInfo POST /foo",
                "ignored",
                "# ResponseInfo GET /foo/:bar",
            )
        )
        by_path = {e.path: e.response_sources for e in endpoints.endpoints}
        self.assertEqual(by_path["/foo"], {"POST": "# ResponseInfo POST /foo\n"})
        self.assertEqual(
            by_path["/foo/:bar"],
            {
                "POST": "# ResponseInfo POST /foo/:bar\n# ResponseInfo POST /foo/:bar\n",
                "GET": "# ResponseInfo GET /foo/:bar\n",
            },
        )
        self.assertEqual(endpoints.seed_cells, ("ignored",))

    def test_orphan_response_info_warns(self) -> None:
        """A ResponseInfo cell without its endpoint cell is reported, not routed."""
        endpoints = parse_notebook(code("# GET /a", "# ResponseInfo PUT /a", "# ResponseInfo GET /b"))
        self.assertEqual(routes(endpoints), ["/a"])
        self.assertEqual(endpoints.endpoints[0].response_sources, {})
        self.assertEqual(len(endpoints.warnings), 2)

    def test_list_of_lines_source(self) -> None:
        """A raw-JSON style source given as a list of lines is joined first."""
        endpoints = parse_notebook([("code", ["# GET /a\n", "print(1)"])])
        self.assertEqual(endpoints.endpoints[0].sources["GET"], "# GET /a\nprint(1)\n")


class CommentPrefixTests(SynchronousTestCase):
    """The comment token comes from metadata.language_info.name."""

    def test_scala_uses_slashes(self) -> None:
        """A scala notebook is annotated with `//`; `#` lines are then plain code."""
        notebook = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(s) for s in ("// GET /s", "# GET /p")],
            metadata={"language_info": {"name": "scala"}},
        )
        endpoints = parse_notebook(notebook)
        self.assertEqual(endpoints.language, "scala")
        self.assertEqual(endpoints.comment_prefix, "//")
        self.assertEqual(routes(endpoints), ["/s"])
        self.assertEqual(endpoints.seed_cells, ("# GET /p",))

    def test_defaults_and_overrides(self) -> None:
        """Unknown or missing languages get `#`; overrides merge over the defaults."""
        self.assertEqual(comment_prefix_for(None), "#")
        self.assertEqual(comment_prefix_for("fakelang"), "#")
        self.assertEqual(comment_prefix_for("SQL"), "--")
        self.assertEqual(comment_prefix_for("python", {"python": "%%"}), "%%")
        self.assertEqual(comment_prefix_for("scala", {"python": "%%"}), "//")
        self.assertEqual(comment_prefix_for("x", {None: ";"}), ";")

    def test_prefix_is_not_a_regex(self) -> None:
        """A prefix with regex metacharacters is matched literally."""
        endpoints = parse_notebook(code("+ GET /a", "a GET /b"), comment_prefixes={None: "+"})
        self.assertEqual(routes(endpoints), ["/a"])

    def test_explicit_language(self) -> None:
        """Cells given as pairs take the language from the keyword argument."""
        endpoints = parse_notebook(code("-- GET /q"), language="sql")
        self.assertEqual(routes(endpoints), ["/q"])


class OrderingTests(SynchronousTestCase):
    """Routing order: first-parameter depth, descending, ties in notebook order."""

    def test_first_path_param_index(self) -> None:
        """Depth of the first `:`; sys.maxsize without one."""
        self.assertEqual(first_path_param_index("/foo/:bar"), 1)
        self.assertEqual(first_path_param_index("/foo/quo/:bar"), 2)
        self.assertEqual(first_path_param_index("/:id"), 0)
        self.assertEqual(first_path_param_index("/foo/quo/bar"), sys.maxsize)

    def test_default_sort(self) -> None:
        """The reference's unit example sorts to /hello/world, /hello/:foo, /:foo."""
        endpoints = parse_notebook(
            code("# POST /:foo", "# POST /hello/:foo", "# GET /hello/:foo", "# PUT /hello/world")
        )
        self.assertEqual(routes(endpoints), ["/hello/world", "/hello/:foo", "/:foo"])

    def test_custom_sort(self) -> None:
        """A custom sort key is applied descending."""

        def key(path: str) -> int:
            return 0 if "1" in path else 1 if "a" in path else 2

        endpoints = parse_notebook(code("# POST /1", "# POST /+", "# GET /a"), sort_key=key)
        self.assertEqual(routes(endpoints), ["/+", "/a", "/1"])

    def test_endpoint_ordering_notebook(self) -> None:
        """endpoint_ordering.ipynb routes in the order observed on the reference."""
        endpoints = parse_notebook(load("endpoint_ordering.ipynb"))
        self.assertEqual(
            routes(endpoints),
            [
                "/test/test/test/test",
                "/test/test/test/:id",
                "/test/test/:id",
                "/t/t/:id",
                "/test/:id",
                "/t/:id",
                "/:id",
            ],
        )

    def test_ordering_requests_hit_expected_cell(self) -> None:
        """Each request reaches the most specific cell; a 5-deep path is 404."""
        endpoints = parse_notebook(load("endpoint_ordering.ipynb"))
        expected = {
            "/test/test/test/test": "/test/test/test/test",
            "/test/test/test/1": "/test/test/test/:id",
            "/test/test/1": "/test/test/:id",
            "/t/t/1": "/t/t/:id",
            "/test/1": "/test/:id",
            "/t/1": "/t/:id",
            "/1": "/:id",
        }
        for path, template in expected.items():
            found = endpoints.match("GET", at(path))
            assert isinstance(found, Match), path
            self.assertEqual(found.endpoint.path, template)
        self.assertIs(endpoints.match("GET", at("/test/test/test/test/test")), NOT_FOUND)


class PathTemplateTests(SynchronousTestCase):
    """Compiling `/literal/:param` templates."""

    def test_params(self) -> None:
        """Parameters capture one segment each and arrive URL-decoded."""
        template = PathTemplate.compile("/foo/:bar/baz/:quo")
        self.assertEqual(template.params, ("bar", "quo"))
        self.assertEqual(template.match("/foo/x%20y/baz/%C3%A9"), {"bar": "x y", "quo": "é"})
        self.assertEqual(template.match("/foo/a%2Fb/baz/c"), {"bar": "a/b", "quo": "c"})
        self.assertIsNone(template.match("/foo/a/b/baz/c"))
        self.assertIsNone(template.match("/foo//baz/c"))

    def test_anchored_and_trailing_slash(self) -> None:
        """The whole path must match; `/trailing/` differs from `/trailing`."""
        template = PathTemplate.compile("/trailing/")
        self.assertEqual(template.match("/trailing/"), {})
        self.assertIsNone(template.match("/trailing"))
        self.assertIsNone(template.match("/trailing/x"))
        self.assertIsNone(template.match("/x/trailing/"))

    def test_literal_text_is_escaped(self) -> None:
        """Literal text is not a regex: `/a.b` does not match `/aXb`, `/x?` needs the `?`."""
        self.assertIsNone(PathTemplate.compile("/a.b").match("/aXb"))
        self.assertEqual(PathTemplate.compile("/a.b").match("/a.b"), {})
        self.assertIsNone(PathTemplate.compile("/x?").match("/x"))
        self.assertEqual(PathTemplate.compile("/x?").match("/x%3F"), {})
        self.assertEqual(PathTemplate.compile("/+").match("/+"), {})

    def test_literal_with_space_and_unicode(self) -> None:
        """A literal with a space or non-ASCII text matches its percent-encoded request."""
        self.assertEqual(PathTemplate.compile("/with space/x").match("/with%20space/x"), {})
        self.assertEqual(PathTemplate.compile("/héllo").match("/h%C3%A9llo"), {})
        self.assertEqual(PathTemplate.compile("/%7Euser").match("/~user"), {})

    def test_odd_names_compile(self) -> None:
        """Names that are not identifiers, repeats and a bare colon never break compiling."""
        self.assertEqual(PathTemplate.compile("/:id.json").match("/5"), {"id.json": "5"})
        self.assertEqual(PathTemplate.compile("/:a/:a").match("/1/2"), {"a": "2"})
        self.assertEqual(PathTemplate.compile("/a/:").match("/a/:"), {})
        self.assertEqual(PathTemplate.compile("/foo:bar").match("/fooX"), {"bar": "X"})

    def test_repeated_param_warns(self) -> None:
        """A template repeating a parameter name produces a startup warning."""
        endpoints = parse_notebook(code("# GET /:a/:a"))
        self.assertIn("repeats parameter", endpoints.warnings[0])


class MatchTests(SynchronousTestCase):
    """Endpoints.match resolves requests to code, 404 or 405."""

    def setUp(self) -> None:
        self.endpoints = parse_notebook(load("kernel_api.ipynb"))

    def test_match(self) -> None:
        """A known path and verb gives the code and decoded path parameters."""
        found = self.endpoints.match("GET", at("/hello/governor"))
        assert isinstance(found, Match)
        self.assertEqual(found.path_params, {"person": "governor"})
        self.assertTrue(found.source.startswith("# GET /hello/:person\n"))
        self.assertIsNone(found.response_source)

    def test_constant_path_beats_param(self) -> None:
        """`/hello/person` is its own endpoint, not `/hello/:person`."""
        found = self.endpoints.match("GET", at("/hello/person"))
        assert isinstance(found, Match)
        self.assertEqual(found.endpoint.path, "/hello/person")

    def test_not_found(self) -> None:
        """An unknown path is NOT_FOUND."""
        self.assertIs(self.endpoints.match("GET", at("/not/an/endpoint")), NOT_FOUND)

    def test_method_not_allowed(self) -> None:
        """A known path with another verb is 405 listing the path's verbs."""
        self.assertEqual(
            self.endpoints.match("DELETE", at("/message")), MethodNotAllowed(("GET", "PUT"))
        )
        self.assertEqual(self.endpoints.match("PATCH", at("/people")), MethodNotAllowed(("GET", "POST", "PUT")))

    def test_later_route_with_verb_wins_over_405(self) -> None:
        """If the first matching route lacks the verb, a later matching one that has it answers."""
        endpoints = parse_notebook(code("# GET /hello/world", "# POST /hello/:name"))
        found = endpoints.match("POST", at("/hello/world"))
        assert isinstance(found, Match)
        self.assertEqual(found.path_params, {"name": "world"})
        self.assertEqual(
            endpoints.match("PUT", at("/hello/world")), MethodNotAllowed(("GET", "POST"))
        )

    def test_response_source(self) -> None:
        """A match carries the ResponseInfo code of its verb."""
        endpoints = parse_notebook(load("responses.ipynb"))
        found = endpoints.match("GET", at("/nocontent"))
        assert isinstance(found, Match)
        self.assertIn("204", found.response_source or "")

    def test_multi_concatenated(self) -> None:
        """kernel_api's two `/multi` cells run as one source."""
        found = self.endpoints.match("GET", at("/multi"))
        assert isinstance(found, Match)
        self.assertEqual(found.source, "# GET /multi\nx = 1\n# GET /multi\nprint('x is {}'.format(x))\n")

    def test_path_is_refused(self) -> None:
        """A raw path instead of decoded segments is a TypeError, never a silent per-character match."""
        self.assertRaises(TypeError, self.endpoints.match, "GET", "/hello")
        self.assertRaises(TypeError, self.endpoints.match, "GET", b"/hello")

    def test_encoded_slash_stays_in_its_segment(self) -> None:
        """A decoded segment holding ``/`` is one parameter value, never two segments."""
        found = self.endpoints.match("GET", at("/hello/a%2Fb"))
        assert isinstance(found, Match)
        self.assertEqual(found.path_params, {"person": "a/b"})
        self.assertIs(self.endpoints.match("GET", at("/hello%2Fperson")), NOT_FOUND)


class NoEndpointsTests(SynchronousTestCase):
    """Startup must fail distinctly when nothing is annotated."""

    def test_require(self) -> None:
        """require() raises NoEndpointsError with the reference's message."""
        endpoints = parse_notebook(load("zen.ipynb"))
        self.assertTrue(endpoints.empty)
        error = self.assertRaises(NoEndpointsError, endpoints.require)
        self.assertEqual(str(error), NO_ENDPOINTS_MESSAGE)
        self.assertEqual(
            NO_ENDPOINTS_MESSAGE,
            "No endpoints were discovered. Check your notebook to make sure your cells "
            "are annotated correctly.",
        )

    def test_require_returns_self(self) -> None:
        """require() passes a notebook with endpoints through."""
        endpoints = parse_notebook(load("simple_api.ipynb"))
        self.assertIs(endpoints.require(), endpoints)


SWAGGER_CELL = (
    '```\n{"swagger":"2.0","paths":{"":{"post":{"operationId":"postRoot","parameters":[{"name":"foo"}]}},'
    '"/hello":{"post":{"operationId":"postHello","parameters":[{"name":"foo"}]},'
    '"get":{"operationId":"getHello","parameters":[{"name":"foo"}]}},'
    '"/hello/world":{"put":{"operationId":"putWorld"}}}}\n```\n'
)
FOO_SPEC = (
    '```\n{"swagger":"2.0", "paths": {"/foo": {"put": {"operationId":"putbar","parameters": [{"name": "bar"}]},'
    '"post":{"operationId":"postbar"},"get": {"operationId":"get","parameters": [{"name": "bar"}]}}}}\n```\n'
)


class SwaggerModeTests(SynchronousTestCase):
    """The swagger-cell parser (`operationId` annotations)."""

    def test_spec_detected(self) -> None:
        """A fenced JSON block with a `swagger` key becomes the spec."""
        endpoints = parse_notebook([("markdown", FOO_SPEC)], mode="swagger")
        self.assertEqual(endpoints.spec["swagger"], "2.0")  # type: ignore[index]

    def test_operation_cell_variants(self) -> None:
        """`#operationId:x`, `# operationId:x` and `#operationId: x` all annotate."""
        spec = '```\n{"swagger":"2.0","paths":{"/a":{"get":{"operationId":"x"}}}}\n```'
        for annotation in ("#operationId:x", "# operationId:x", "#operationId: x"):
            endpoints = parse_notebook([("markdown", spec), ("code", annotation)], mode="swagger")
            self.assertEqual(routes(endpoints), ["/a"], annotation)
            self.assertEqual(endpoints.seed_cells, ())
        endpoints = parse_notebook([("markdown", spec), ("code", "# another comment")], mode="swagger")
        self.assertTrue(endpoints.empty)

    def test_response_cell_variants(self) -> None:
        """ResponseInfo operation cells attach to their operation and are not seeds."""
        spec = '```\n{"swagger":"2.0","paths":{"/a":{"get":{"operationId":"foo"}}}}\n```'
        for annotation in (
            "#ResponseInfo operationId:foo",
            "# ResponseInfo operationId:foo",
            "# ResponseInfo  operationId: foo",
        ):
            endpoints = parse_notebook(
                [("markdown", spec), ("code", "# operationId: foo"), ("code", annotation)],
                mode="swagger",
            )
            self.assertEqual(endpoints.endpoints[0].response_sources, {"GET": annotation + "\n"})
            self.assertEqual(endpoints.seed_cells, ())

    def test_param_paths_and_order(self) -> None:
        """Named parameters append `/:name`; routes sort as in annotation mode."""
        cells = [("markdown", SWAGGER_CELL)] + code(
            "# operationId:putWorld", "# operationId:getHello", "# operationId:postHello", "# operationId:postRoot"
        )
        endpoints = parse_notebook(cells, mode="swagger")
        self.assertEqual(routes(endpoints), ["/hello/world", "/hello/:foo", "/:foo"])

    def test_concatenation(self) -> None:
        """Cells naming the same operationId concatenate; unknown ids are warned about."""
        spec = (
            '```\n{"swagger":"2.0", "paths": {"/foo": {"put": {"operationId":"putFoo","parameters": [{"name": "bar"}]},'
            '"post":{"operationId":"postFooBody"},"get": {"operationId":"getFoo","parameters": [{"name": "bar"}]}}}}\n```\n'
        )
        cells = [("markdown", spec)] + code(
            "# operationId: postFooBody ",
            "# unrelated comment ",
            "# operationId: putFoo",
            "# operationId: puttFoo",
            "# operationId: getFoo",
            "# operationId: putFoo",
        )
        endpoints = parse_notebook(cells, mode="swagger")
        by_path = {e.path: e.sources for e in endpoints.endpoints}
        self.assertEqual(
            by_path,
            {
                "/foo": {"POST": "# operationId: postFooBody \n"},
                "/foo/:bar": {
                    "PUT": "# operationId: putFoo\n# operationId: putFoo\n",
                    "GET": "# operationId: getFoo\n",
                },
            },
        )
        self.assertEqual(endpoints.seed_cells, ("# unrelated comment ",))
        self.assertTrue(any("puttFoo" in w for w in endpoints.warnings))

    def test_undeclared_and_unreferenced_warnings(self) -> None:
        """Operations referenced but not declared, or declared but unused, are warned about."""
        cells = code("# operationId: get", "# operationId: putbar", "# operationId: extraOperation")
        endpoints = parse_notebook(cells + [("markdown", FOO_SPEC)], mode="swagger")
        text = "\n".join(endpoints.warnings)
        self.assertIn("extraOperation", text)
        self.assertIn("postbar", text)

    def test_verbs_match_case_insensitively(self) -> None:
        """The spec's `get` key answers a GET request (the reference answered 405)."""
        endpoints = parse_notebook(load("swagger_api.ipynb"), mode="swagger")
        found = endpoints.match("GET", at("/item/5"))
        assert isinstance(found, Match)
        self.assertEqual(found.path_params, {"id": "5"})
        self.assertIsNotNone(found.response_source)
        self.assertIsInstance(endpoints.match("GET", at("/hello")), Match)
        self.assertIsInstance(endpoints.match("POST", at("/item")), Match)
        self.assertEqual(endpoints.match("DELETE", at("/hello")), MethodNotAllowed(("GET",)))

    def test_no_spec(self) -> None:
        """Without a spec nothing is routed and the absence is reported."""
        endpoints = parse_notebook(code("# operationId: x"), mode="swagger")
        self.assertTrue(endpoints.empty)
        self.assertIsNone(endpoints.spec)
        self.assertIn("No Swagger documentation found", endpoints.warnings)

    def test_malformed_specs_never_raise(self) -> None:
        """Non-object JSON, a non-dict `paths`, odd operations and names are skipped."""
        odd = [
            '["swagger"]',
            '"swagger"',
            '{"swagger": 1, "paths": []}',
            '{"swagger": 1, "paths": {"/a": [], "/b": {"get": 3}, "/c": {"get": {"operationId": 4}}}}',
            '{"swagger": 1, "paths": {"/d": {"patch": {"operationId": "p"}, '
            '"get": {"operationId": "g", "parameters": [1, {"name": 2}, {"name": "n"}]}}}}',
        ]
        for document in odd:
            endpoints = parse_notebook(
                [("markdown", document)] + code("# operationId: p", "# operationId: g"), mode="swagger"
            )
            self.assertIsInstance(endpoints, Endpoints)
        self.assertEqual(routes(endpoints), ["/d/:n"])


class PropertyTests(SynchronousTestCase):
    """The parser never raises on arbitrary cell text."""

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["code", "markdown", "raw"]),
                st.one_of(
                    st.text(),
                    st.builds(
                        lambda p, v, path, rest: f"{p}{v}{path}{rest}",
                        st.sampled_from(["# ", "#", "// ", "# ResponseInfo ", "# operationId: "]),
                        st.sampled_from(["GET ", "POST ", "get ", ""]),
                        st.text(alphabet="/:ab.?*()[]{}\\% \t\n%éx", max_size=20),
                        st.text(max_size=20),
                    ),
                ),
            ),
            max_size=8,
        ),
        st.sampled_from(["annotations", "swagger"]),
        st.text(max_size=30),
    )
    def test_never_raises(self, cells: list[tuple[str, str]], mode: str, path: str) -> None:
        """Parsing then matching any decoded segments works for any cells in both modes."""
        endpoints = parse_notebook(cells, mode=mode)  # type: ignore[arg-type]
        for method in ("GET", "POST", "PATCH"):
            endpoints.match(method, tuple(path.split("/")))
            endpoints.match(method, ("", *path.split("/")))


class ResourceNotebookTests(SynchronousTestCase):
    """The shipped test notebooks are valid and declare what the integration tests need."""

    def test_all_valid(self) -> None:
        """Every .ipynb under tests/resources validates as nbformat v4."""
        names = sorted(p.name for p in RESOURCES.glob("*.ipynb"))
        self.assertEqual(len(names), 10)
        for name in names:
            nbformat.validate(load(name))

    def test_kernel_api_endpoints(self) -> None:
        """kernel_api.ipynb has every endpoint the notebook-http tests call."""
        endpoints = parse_notebook(load("kernel_api.ipynb"))
        wanted = {
            ("GET", "/hello"), ("GET", "/hello/person"), ("GET", "/hello/persons"),
            ("GET", "/hello/people"), ("GET", "/hello/x"), ("GET", "/message"),
            ("PUT", "/message"), ("GET", "/people"), ("POST", "/people"), ("PUT", "/people"),
            ("DELETE", "/people/2"), ("GET", "/error"), ("GET", "/stderr"), ("GET", "/hold"),
            ("GET", "/execute_result"), ("GET", "/content-type"), ("GET", "/multi"),
            ("GET", "/env_kernel_gateway"), ("GET", "/input"), ("GET", "/die"),
        }  # fmt: skip
        for method, path in wanted:
            self.assertIsInstance(endpoints.match(method, at(path)), Match, f"{method} {path}")
        self.assertIn("hello_message = 'hello {}'\npeople = ['Corey', 'Nitin', 'Pete']", endpoints.seed_cells)

    def test_unknown_kernel(self) -> None:
        """unknown_kernel.ipynb is fakelang2000 with the fakeprint endpoint."""
        notebook = load("unknown_kernel.ipynb")
        self.assertEqual(notebook.metadata.kernelspec.name, "fakelang2000")
        self.assertFalse(parse_notebook(notebook).empty)

    def test_seed_only_notebooks(self) -> None:
        """zen and failing_code are pure seed notebooks."""
        self.assertEqual(parse_notebook(load("zen.ipynb")).seed_cells, ("import this",))
        self.assertEqual(parse_notebook(load("failing_code.ipynb")).seed_cells, ("import not-a-real-module",))

    def test_weird_name_matches_simple_api(self) -> None:
        """The oddly named notebook has the same cells as simple_api."""
        weird = load("weirdly%20named#notebook.ipynb")
        simple = load("simple_api.ipynb")
        self.assertEqual([c.source for c in weird.cells], [c.source for c in simple.cells])

    def test_static_file(self) -> None:
        """public/index.html exists for the static_path test."""
        self.assertIn("<html>", (RESOURCES / "public" / "index.html").read_text())
