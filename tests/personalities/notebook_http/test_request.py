"""Tests for kgd.personalities.notebook_http.request: building REQUEST."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from kgd.personalities.notebook_http.request import (
    BadRequestBody,
    assignment_code,
    build_request,
    canonical_header_name,
    code_with_request,
    headers_to_dict,
    media_type,
    parse_body,
    parse_query,
    request_json,
)


def multipart_body(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body from (name, filename, payload) parts."""
    out = b""
    for name, filename, payload in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + payload + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


class ParseBodyTests(SynchronousTestCase):
    """REQUEST.body by Content-Type."""

    def test_text(self) -> None:
        """text/plain bodies are the decoded string."""
        self.assertEqual(parse_body(b"test value", "text/plain"), "test value")

    def test_missing_type_is_text(self) -> None:
        """Without a Content-Type the body is text, even if it looks like JSON."""
        self.assertEqual(parse_body(b'{"foo" : "bar"}', None), '{"foo" : "bar"}')

    def test_other_types_are_text(self) -> None:
        """Any other type (even a +json one) is passed as text."""
        self.assertEqual(parse_body(b"<feed/>", "application/atom+xml"), "<feed/>")
        self.assertEqual(parse_body(b"[1]", "application/vnd.api+json"), "[1]")
        self.assertEqual(parse_body(b"x", "foo"), "x")

    def test_empty(self) -> None:
        """An empty body is "" whatever the type (a bodiless GET with a JSON type is fine)."""
        for content_type in (None, "text/plain", "application/json", "multipart/form-data"):
            self.assertEqual(parse_body(b"", content_type), "")

    def test_json(self) -> None:
        """application/json is parsed."""
        self.assertEqual(parse_body(b'{ "foo" : "bar" }', "application/json"), {"foo": "bar"})
        self.assertEqual(
            parse_body(b'["Rick", "Maggie"]', "application/json"), ["Rick", "Maggie"]
        )

    def test_json_with_charset(self) -> None:
        """application/json with parameters is parsed too (the reference kept a string)."""
        self.assertEqual(parse_body(b'{"a": 1}', "application/json; charset=utf-8"), {"a": 1})
        self.assertEqual(parse_body(b'{"a": 1}', "Application/JSON ; charset=UTF-8"), {"a": 1})
        self.assertEqual(parse_body('"é"'.encode("latin-1"), "application/json; charset=latin-1"), "é")

    def test_bad_json(self) -> None:
        """Invalid JSON is BadRequestBody (the reference passed the raw string)."""
        self.assertRaises(BadRequestBody, parse_body, b'{ "foo" "bar" }', "application/json")
        self.assertRaises(BadRequestBody, parse_body, b"\xff", "application/json")
        self.assertRaises(BadRequestBody, parse_body, b"[" * 100000, "application/json")
        self.assertRaises(BadRequestBody, parse_body, b"1", "application/json; charset=nope")

    def test_undecodable_text(self) -> None:
        """Text that is not valid in its charset is BadRequestBody, not a 500."""
        self.assertRaises(BadRequestBody, parse_body, b"\xff\xfe", "text/plain")
        self.assertEqual(parse_body(b"\xe9", "text/plain; charset=latin-1"), "é")

    def test_urlencoded(self) -> None:
        """Form-urlencoded bodies are {field: [values]}, blank values kept."""
        body = b"foo=bar&foo=b%C3%A9&empty=&hola+%7B%7D"
        self.assertEqual(
            parse_body(body, "application/x-www-form-urlencoded"),
            {"foo": ["bar", "bé"], "empty": [""], "hola {}": [""]},
        )
        self.assertEqual(
            parse_body(b"a=1", "application/x-www-form-urlencoded; charset=utf-8"), {"a": ["1"]}
        )

    def test_urlencoded_bad_escape(self) -> None:
        """A percent escape that is not UTF-8 is BadRequestBody."""
        self.assertRaises(BadRequestBody, parse_body, b"a=%FF", "application/x-www-form-urlencoded")

    def test_multipart(self) -> None:
        """Multipart fields are {field: [values]}; file parts are dropped."""
        body = multipart_body(
            "XyZ",
            [("foo", None, b"bar"), ("foo", None, "bé".encode()), ("upload", "a.txt", b"data")],
        )
        self.assertEqual(
            parse_body(body, 'multipart/form-data; boundary="XyZ"'), {"foo": ["bar", "bé"]}
        )

    def test_bad_multipart(self) -> None:
        """No boundary, a truncated stream, or a non-UTF-8 field is BadRequestBody."""
        good = multipart_body("B", [("a", None, b"1")])
        self.assertRaises(BadRequestBody, parse_body, good, "multipart/form-data")
        self.assertRaises(BadRequestBody, parse_body, good[:-10], "multipart/form-data; boundary=B")
        self.assertRaises(BadRequestBody, parse_body, b"garbage", "multipart/form-data; boundary=B")
        bad = multipart_body("B", [("a", None, b"\xff")])
        self.assertRaises(BadRequestBody, parse_body, bad, "multipart/form-data; boundary=B")

    def test_media_type(self) -> None:
        """media_type lower-cases the type and parses parameters; none means text/plain."""
        self.assertEqual(media_type(None), ("text/plain", {}))
        self.assertEqual(
            media_type('Multipart/Form-Data; Boundary="a b"'), ("multipart/form-data", {"boundary": "a b"})
        )

    @settings(max_examples=300, deadline=None)
    @given(
        st.binary(max_size=200),
        st.one_of(
            st.none(),
            st.sampled_from(
                [
                    "application/json",
                    "application/json; charset=utf-16",
                    "application/json; charset=bogus",
                    "application/x-www-form-urlencoded",
                    "multipart/form-data",
                    "multipart/form-data; boundary=B",
                    "text/plain; charset=rot13",
                    "text/plain; charset=base64",
                    "text/plain",
                ]
            ),
            st.text(max_size=40),
        ),
    )
    def test_only_bad_request_body(self, body: bytes, content_type: str | None) -> None:
        """Whatever the bytes and type, parse_body returns or raises BadRequestBody."""
        try:
            parse_body(body, content_type)
        except BadRequestBody:
            pass


class QueryAndHeaderTests(SynchronousTestCase):
    """REQUEST.args and REQUEST.headers."""

    def test_query(self) -> None:
        """All values in order, decoded; blank values dropped like tornado's query_arguments."""
        self.assertEqual(
            parse_query("arga=1234&arga=4566&argb=hello&blank=&flag"),
            {"arga": ["1234", "4566"], "argb": ["hello"]},
        )
        self.assertEqual(parse_query(b"person=governor,%20rick"), {"person": ["governor, rick"]})
        self.assertEqual(parse_query("a=%FF"), {"a": ["\ufffd"]})

    def test_token_dropped(self) -> None:
        """drop_token removes only the `token` argument."""
        self.assertEqual(parse_query("token=s&x=1", drop_token=True), {"x": ["1"]})
        self.assertEqual(parse_query("token=s&x=1"), {"token": ["s"], "x": ["1"]})

    def test_headers_to_dict(self) -> None:
        """Repeated headers become lists; names take tornado's canonical case."""
        result = headers_to_dict(
            [
                ("content-type", "application/json"),
                (b"Set-Cookie", b"A=B"),
                ("set-cookie", "C=D"),
                ("ETAG", " x "),
            ]
        )
        self.assertEqual(
            result, {"Content-Type": "application/json", "Set-Cookie": ["A=B", "C=D"], "Etag": "x"}
        )
        self.assertEqual(headers_to_dict([]), {})

    def test_canonical_header_name(self) -> None:
        """Each dash-separated word is capitalised, the rest lower-cased."""
        self.assertEqual(canonical_header_name("if-none-match"), "If-None-Match")
        self.assertEqual(canonical_header_name("WWW-Authenticate"), "Www-Authenticate")


class BuildRequestTests(SynchronousTestCase):
    """build_request assembles the four REQUEST keys."""

    def test_shape(self) -> None:
        """body, args, path and headers are filled from the request parts."""
        request = build_request(
            body=b'["Rick"]',
            query="person=governor",
            headers=[("Content-Type", "application/json"), ("If-None-Match", '""9a28""')],
            path_params={"index": "2"},
        )
        self.assertEqual(
            request,
            {
                "body": ["Rick"],
                "args": {"person": ["governor"]},
                "path": {"index": "2"},
                "headers": {"Content-Type": "application/json", "If-None-Match": '""9a28""'},
            },
        )

    def test_defaults(self) -> None:
        """A bare request has an empty body and empty mappings."""
        self.assertEqual(build_request(), {"body": "", "args": {}, "path": {}, "headers": {}})

    def test_first_content_type_wins(self) -> None:
        """With repeated Content-Type headers the first decides the parsing."""
        request = build_request(
            body=b"[1]", headers=[("Content-Type", "application/json"), ("Content-Type", "text/plain")]
        )
        self.assertEqual(request["body"], [1])

    def test_gateway_token_stripped(self) -> None:
        """With a gateway token, `token` args and an Authorization carrying it are removed."""
        for authorization in ("token s3cret", "Bearer s3cret", "TOKEN  s3cret "):
            request = build_request(
                query="token=s3cret&q=1",
                headers=[("Authorization", authorization), ("Cookie", "c=1")],
                gateway_token="s3cret",
            )
            self.assertEqual(request["args"], {"q": ["1"]})
            self.assertEqual(request["headers"], {"Cookie": "c=1"}, authorization)

    def test_other_authorization_kept(self) -> None:
        """An Authorization that is not the gateway token is the notebook's to see."""
        request = build_request(
            headers=[("Authorization", "Basic dTpw"), ("Authorization", "token s3cret")],
            gateway_token="s3cret",
        )
        self.assertEqual(request["headers"], {"Authorization": "Basic dTpw"})
        request = build_request(headers=[("Authorization", "token other")], gateway_token="s3cret")
        self.assertEqual(request["headers"], {"Authorization": "token other"})

    def test_no_gateway_token_passes_everything(self) -> None:
        """Without a configured token, `token` and Authorization pass through as in the reference."""
        request = build_request(query="token=t", headers=[("Authorization", "token t")])
        self.assertEqual(request["args"], {"token": ["t"]})
        self.assertEqual(request["headers"], {"Authorization": "token t"})

    def test_bad_body_propagates(self) -> None:
        """An undecodable body surfaces as BadRequestBody."""
        self.assertRaises(
            BadRequestBody, build_request, body=b"{", headers=[("Content-Type", "application/json")]
        )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(['"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"', "[" * 3000, "]" * 3000, "{", '"a":', "}", ",", "1e999", "NaN", "9" * 5000]), min_size=1, max_size=8).map("".join))
    def test_hostile_json_bodies(self, text: str) -> None:
        """JSON-ish hostile bodies (deep nesting, lone surrogate escapes, huge numbers) are a BadRequestBody
        or a REQUEST the kernel can read back as JSON; nothing else escapes to become a 500."""
        try:
            request = build_request(body=text.encode(), headers=[("Content-Type", "application/json")])
        except BadRequestBody:
            return
        json.loads(request_json(request))

    def test_request_json_is_ascii(self) -> None:
        """request_json uses json.dumps defaults: ASCII text, parseable back."""
        request = build_request(body="héllo ☃ 😀".encode(), path_params={"p": "x y"})
        text = request_json(request)
        self.assertTrue(text.isascii())
        self.assertEqual(json.loads(text), request)


RHS_PREFIX = "REQUEST = "


class AssignmentCodeTests(SynchronousTestCase):
    """The statement that sets REQUEST in the kernel."""

    QUOTED = """{"body": "", "headers": {"Accept-Language": "en-US,en;q=0.8",
        "If-None-Match": "\\"\\"9a28a9262f954494a8de7442c63d6d0715ce0998\\"\\""}, "args": {}, "path": {}}"""

    def test_default_form(self) -> None:
        """Without a language, and for python or scala, it is `REQUEST = "..."`."""
        for language in (None, "", "python", "scala", "R"):
            self.assertTrue(assignment_code(language, "{}").startswith('REQUEST = "{'), language)

    def test_quotes_and_backslashes_round_trip(self) -> None:
        """Quotes, backslashes and newlines survive (the reference's two escaping tests)."""
        code = assignment_code("python", self.QUOTED)
        self.assertEqual(json.loads(code[len(RHS_PREFIX):]), self.QUOTED)
        self.assertEqual(ast.literal_eval(code[len(RHS_PREFIX):]), self.QUOTED)

    def test_perl_and_bash_forms(self) -> None:
        """perl is `my $REQUEST = '...'`, bash `REQUEST='...'`: single quotes, no interpolation."""
        self.assertEqual(assignment_code("perl", "{}"), "my $REQUEST = '{}'")
        self.assertEqual(assignment_code("Bash", "{}"), "REQUEST='{}'")

    def test_interpolating_languages(self) -> None:
        """Julia-style `$` and Ruby-style `#{` are escaped so request text is never code."""
        self.assertEqual(assignment_code("julia", '{"a": "$(run)"}'), 'REQUEST = "{\\"a\\": \\"\\$(run)\\"}"')
        self.assertEqual(assignment_code("ruby", '#{x}'), 'REQUEST = "\\#{x}"')

    NASTY = """{"body": "$(echo pwned) `echo pwned` ${HOME} @{[ 'x' ]} it's \\\\ \\" ! \\n end"}"""

    def evaluated_by(self, program: str, *argv: str) -> str:
        """What ``program`` (bash or perl) prints for a script; skipped, visibly, if it is not installed."""
        if shutil.which(program) is None:
            raise SkipTest(f"{program} is not installed: this check runs the real {program} on PATH")
        return subprocess.run([program, *argv], capture_output=True, check=True).stdout.decode()

    def test_bash_evaluates_back_exactly(self) -> None:
        """Real bash reads back hostile text exactly (no command substitution)."""
        script = assignment_code("bash", self.NASTY) + '\nprintf %s "$REQUEST"'
        self.assertEqual(self.evaluated_by("bash", "-c", script), self.NASTY)

    def test_perl_evaluates_back_exactly(self) -> None:
        """Real perl reads back hostile text exactly (no interpolation)."""
        script = assignment_code("perl", self.NASTY) + "; print $REQUEST;"
        self.assertEqual(self.evaluated_by("perl", "-e", script), self.NASTY)

    @settings(max_examples=500, deadline=None)
    @given(st.text())
    def test_python_round_trip(self, text: str) -> None:
        """For any text, Python's literal_eval of the right-hand side gives it back."""
        code = assignment_code("python", text)
        self.assertTrue(code.startswith(RHS_PREFIX))
        self.assertNotIn("\n", code)
        self.assertEqual(ast.literal_eval(code[len(RHS_PREFIX):]), text)

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.text(), st.text()), st.binary(max_size=50))
    def test_request_round_trip(self, headers: dict[str, str], body: bytes) -> None:
        """A built request survives request_json + assignment + literal_eval + json.loads."""
        try:
            request = build_request(body=body, headers=list(headers.items()))
        except BadRequestBody:
            return
        code = assignment_code(None, request_json(request))
        self.assertEqual(json.loads(ast.literal_eval(code[len(RHS_PREFIX):])), request)


class CodeWithRequestTests(SynchronousTestCase):
    """The REQUEST assignment folded into the endpoint's own execution."""

    SOURCE = "# GET /hello/:name\nreq = json.loads(REQUEST)\nreq['path']['name']\n"

    def run_python(self, code: str) -> dict[str, object]:
        namespace: dict[str, object] = {"json": json}
        exec(compile(code, "<cell>", "exec"), namespace)
        return namespace

    def test_python_sets_request_before_the_cell(self) -> None:
        """The cell sees REQUEST, keeps its line count and its last expression."""
        text = request_json({"path": {"name": 'x"y\\z'}})
        code = code_with_request("python", text, self.SOURCE, "#")
        assert code is not None
        self.assertEqual(code.count("\n"), self.SOURCE.count("\n"))
        self.assertEqual(self.run_python(code)["req"], {"path": {"name": 'x"y\\z'}})
        tree = ast.parse(code)
        self.assertIsInstance(tree.body[-1], ast.Expr)

    def test_other_languages_and_prefixes_are_not_folded(self) -> None:
        """Anything but Python with a # comment first line keeps two executions."""
        self.assertIsNone(code_with_request("R", "{}", "# GET /x\n1", "#"))
        self.assertIsNone(code_with_request(None, "{}", "# GET /x\n1", "#"))
        self.assertIsNone(code_with_request("python", "{}", "// GET /x\n1", "//"))
        self.assertIsNone(code_with_request("python", "{}", "x = 1\n# GET /x", "#"))

    @settings(max_examples=200, deadline=None)
    @given(st.text())
    def test_any_request_text_stays_on_the_first_line(self, text: str) -> None:
        """Whatever the request holds, Python reads it back exactly from the folded code."""
        code = code_with_request("python", text, "# GET /x\nresult = REQUEST\n", "#")
        assert code is not None
        self.assertEqual(self.run_python(code)["result"], text)
