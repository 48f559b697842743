"""Hostile JSON bodies on every jupyter-websocket route that reads one, in memory.

Bodies Python's json parses but cannot use (nesting past the recursion
limit, lone surrogate escapes) must be a JSON 400 with a reason, never a 500,
and must start no kernel; hypothesis throws JSON-ish text of that class at
each route.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.personalities.jupyter_websocket.test_rest import RestTestCase

DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"name":' + b'{"a":' * 5000 + b"1" + b"}" * 5001
SURROGATE_ENV = b'{"env": {"KERNEL_X": "a\\ud800b"}}'
SURROGATE_KEY = b'{"\\udfff": 1}'
SURROGATE_NAME = b'{"kernel": {"name": "\\ud83d"}, "path": "p", "type": "notebook"}'


def body_routes(session_id: str) -> list[tuple[str, str]]:
    """Every (method, path) that reads a JSON body."""
    return [("POST", "/api/kernels"), ("POST", "/api/sessions"), ("PATCH", f"/api/sessions/{session_id}")]


def json_routes(kernel_id: str, session_id: str) -> list[tuple[str, str]]:
    """Every (method, path) a client may send a JSON body to; restart and
    interrupt ignore theirs, as the reference does."""
    return [
        *body_routes(session_id),
        ("POST", f"/api/kernels/{kernel_id}/restart"),
        ("POST", f"/api/kernels/{kernel_id}/interrupt"),
    ]


# JSON-ish text built to hit the decoder's edges: deep nesting, escapes of
# unpaired surrogates, huge numbers, NaN, and plain garbage around them.
HOSTILE_PIECES = st.sampled_from(
    ['"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"', "NaN", "-Infinity", "1e999", "9" * 5000, "[" * 3000, "]" * 3000,
     '{"' , '":', ",", "null", '"env"', '"name"', '"kernel"', '{"KERNEL_A":', "}"]
)
HOSTILE_TEXT = st.lists(HOSTILE_PIECES, min_size=1, max_size=8).map("".join)


class HostileBodyTests(RestTestCase):
    def setUp(self) -> None:
        super().setUp()
        session = self.request("POST", "/api/sessions", {"kernel": {"name": "other"}, "path": "p", "type": "notebook"})
        self.assertEqual(session.status, 201, session.body)
        self.session_id = session.json()["id"]
        self.kernel_id = session.json()["kernel"]["id"]
        self.launches = len(self.launcher.launches)

    def test_deep_nesting(self) -> None:
        """A body nested thousands deep is a 400 saying so, on every JSON route, and starts nothing."""
        for method, path in body_routes(self.session_id):
            for raw in (DEEP, DEEP_OBJECT):
                body = self.assertError(self.request(method, path, raw=raw), 400)
                self.assertIn("nested too deeply", body["message"], (method, path))
        self.assertEqual(len(self.launcher.launches), self.launches)

    def test_lone_surrogates(self) -> None:
        """A lone surrogate escape anywhere in a body (env value, key, kernel name) is a 400 naming it, and starts nothing."""
        for method, path in body_routes(self.session_id):
            for raw in (SURROGATE_ENV, SURROGATE_KEY, SURROGATE_NAME):
                body = self.assertError(self.request(method, path, raw=raw), 400)
                self.assertIn("surrogate", body["message"], (method, path, raw))
        self.assertEqual(len(self.launcher.launches), self.launches)

    def test_paired_surrogates_accepted(self) -> None:
        """A properly paired escape (an emoji) in env is ordinary Unicode and starts the kernel."""
        response = self.request("POST", "/api/kernels", raw=b'{"env": {"KERNEL_X": "\\ud83d\\ude00"}}')
        self.assertEqual(response.status, 201, response.body)

    @settings(max_examples=150, deadline=None)
    @given(st.integers(min_value=0, max_value=4), HOSTILE_TEXT)
    def test_fuzz_never_a_server_error(self, route: int, text: str) -> None:
        """JSON-ish hostile text on any JSON route is answered below 500, errors in the JSON error shape."""
        method, path = json_routes(self.kernel_id, self.session_id)[route]
        response = self.request(method, path, raw=text.encode("utf-8", "surrogatepass"))
        self.assertLess(response.status, 500, (method, path, text[:80], response.body))
        if response.status >= 400:
            self.assertError(response, response.status)
