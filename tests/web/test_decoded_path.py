"""Auth and routing read one decoded path: percent-encoding a path never changes its answer.

Every route of both personalities (and the operator's routes) is requested
as written and with any of its characters percent-encoded, without the
token and with it; the answer must be the same.  This is the class of
``GET /%70ublic/info`` running a token-protected notebook-http cell: the
public-path check and the router had read the path differently.  An encoded
``/`` inside a segment is one segment for both, so it never joins two
segments into a route nor splits one into a public path.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator

from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kgd.gateway import Gateway
from kgd.kernels.kernels import Kernels
from kgd.options import default_config
from kgd.personalities.jupyter_websocket.rest import KernelsAPI
from kgd.personalities.notebook_http.annotations import parse_notebook
from kgd.personalities.notebook_http.outputs import HTTPResponse
from kgd.personalities.notebook_http.personality import NotebookHttpPersonality
from kgd.personalities.notebook_http.routes import NotebookRoutes, PublicFolder
from kgd.service import build_site
from kgd.web.ops import ops_mounts
from kgd.web.resource import GatewayResource, Mount
from tests.kernels.fakes import fake_machine

TOKEN = "s3cret"
AUTH = {b"Authorization": [f"token {TOKEN}".encode()]}
ROOT = "http://127.0.0.1"
PARAM = re.compile(r"<(?:[a-z]+:)?[a-z_]+>")
# Values a path parameter takes: an ordinary one, and one that names a public prefix.
PARAM_VALUES = ("x", "public", "api", "healthz")


def encodings(path: str) -> st.SearchStrategy[str]:
    """``path`` with any of its characters (slashes between segments excepted) percent-encoded, in either case."""

    def encode(char: str, how: int) -> str:
        if char == "/" or how == 0:
            return char
        hexed = "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
        return hexed if how == 1 else hexed.lower()

    return st.lists(st.integers(0, 2), min_size=len(path), max_size=len(path)).map(
        lambda hows: "".join(encode(char, how) for char, how in zip(path, hows))
    )


def joined_segments(path: str) -> Iterator[str]:
    """``path`` with each inner ``/`` in turn written as ``%2F``: one segment where there were two."""
    for index, char in enumerate(path):
        if char == "/" and 0 < index < len(path) - 1:
            yield path[:index] + "%2F" + path[index + 1 :]


class Answers:
    """Requests a gateway resource in memory and reduces each answer to (status, body)."""

    def __init__(self, test: SynchronousTestCase, resource: Any, advance: Any = None) -> None:
        self._test = test
        self._client = StubTreq(resource)
        self._advance = advance

    def __call__(self, method: str, path: str, token: bool) -> tuple[int, bytes]:
        d = self._client.request(method, ROOT + path, headers=AUTH if token else {})
        self._settle()
        response = self._test.successResultOf(d)
        content = self._client.content(response)
        self._settle()
        return response.code, self._test.successResultOf(content)

    def _settle(self) -> None:
        for _ in range(2):
            self._client.flush()
            if self._advance is not None:
                self._advance()


def jupyter_websocket_routes() -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the jupyter-websocket personality and the operator's routes."""
    found = set()
    for rule in KernelsAPI.app.url_map.iter_rules():
        for method in rule.methods or ():
            if method in ("HEAD", "OPTIONS"):
                continue
            for value in PARAM_VALUES:
                found.add((method, "/gw" + PARAM.sub(value, rule.rule)))
    for path in ("/gw/metrics", "/gw/healthz", "/gw/readyz", "/gw/api/status"):
        found.add(("GET", path))
    return sorted(found)


class JupyterWebsocketTests(SynchronousTestCase):
    """Every route of jupyter-websocket, behind the gateway exactly as the daemon builds it."""

    routes = jupyter_websocket_routes()

    def setUp(self) -> None:
        machine = fake_machine(self.mktemp())
        settings = default_config(auth_token=TOKEN, base_url="/gw/")
        kernels = Kernels(machine.specs, machine.launcher, machine.sockets, machine.clock)
        gateway = Gateway(kernels, machine.specs, machine.clock, base_url=settings.base_url)
        self.answer = Answers(self, build_site(settings, gateway).resource, lambda: machine.clock.advance(0))

    def test_routes_cover_public_and_protected(self) -> None:
        """The route list is not empty and holds both public and token-protected routes."""
        outcomes = {self.answer(method, path, token=False)[0] == 401 for method, path in self.routes}
        self.assertEqual(outcomes, {True, False})

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_encoding_never_changes_the_answer(self, data: st.DataObject) -> None:
        """A percent-encoded variant of any route gets the plain path's answer, without the token and (GET) with it."""
        method, path = data.draw(st.sampled_from(self.routes))
        encoded = data.draw(encodings(path))
        self.assertEqual(self.answer(method, encoded, False), self.answer(method, path, False), encoded)
        if method == "GET":
            self.assertEqual(self.answer(method, encoded, True), self.answer(method, path, True), encoded)

    def test_encoded_slash_joins_nothing(self) -> None:
        """``%2F`` between two segments makes one segment: never a public path, never a route (401 or 404, then 404)."""
        for method, path in self.routes:
            for joined in joined_segments(path):
                self.assertIn(self.answer(method, joined, False)[0], (401, 404), joined)
                if method == "GET":
                    self.assertEqual(self.answer(method, joined, True)[0], 404, joined)


class FakeExecutor:
    """Answers a request with the code it was asked to run, so two answers differ if they ran different code."""

    def respond(self, assignment: str | None, source: str, response_source: str | None) -> defer.Deferred[HTTPResponse]:
        return defer.succeed(HTTPResponse(200, (), f"{assignment}\n{source}".encode()))


class FakePool:
    """A kernel pool whose one member is always free."""

    waiting = 0

    def serve(self, work: Any, timeout: float = 0.0) -> defer.Deferred[Any]:
        return work(FakeExecutor())


CELLS = [
    ("code", "# GET /public/info\nprint('info')"),
    ("code", "# GET /:who/greet\nprint('hi')"),
    ("code", "# POST /hello/:name\nprint('posted')"),
    ("code", "# GET /hello\nprint('hello')"),
    ("code", "# DELETE /people/:id\nprint('gone')"),
]
NOTEBOOK_ROUTES = sorted(
    {("GET", "/public/info"), ("GET", "/_api/spec/swagger.json"), ("GET", "/_api/source"), ("GET", "/hello"),
     ("GET", "/public/missing.txt"), ("GET", "/public/folder/"), ("GET", "/healthz")}
    | {("GET", f"/{value}/greet") for value in PARAM_VALUES}
    | {("POST", f"/hello/{value}") for value in PARAM_VALUES}
    | {("DELETE", f"/people/{value}") for value in PARAM_VALUES}
)  # fmt: skip


class NotebookHttpTests(SynchronousTestCase):
    """Every endpoint of a notebook-http API, with ``--static-path`` and without it.

    Without a static path ``/public/...`` is an ordinary, protected endpoint path.
    """

    def setUp(self) -> None:
        # Only answers that need no reactor: a missing file (404) and a folder (403); files are
        # written by a producer on the global cooperator (served in tests.personalities.notebook_http).
        folder = self.mktemp()
        os.makedirs(os.path.join(folder, "folder"))
        self.answers = {static: self._gateway(PublicFolder(folder) if static else None) for static in (True, False)}

    def _gateway(self, public: PublicFolder | None) -> Answers:
        routes = NotebookRoutes(
            parse_notebook(CELLS), FakePool(), swagger=b"{}", source=b"notebook", public=public, auth_token=TOKEN  # type: ignore[arg-type]
        )
        gateway = Gateway(None, None, Clock())  # type: ignore[arg-type]
        personality = NotebookHttpPersonality()
        mounts = [*ops_mounts(gateway), Mount((), routes.app.resource(), personality.is_public)]
        return Answers(self, GatewayResource("/", mounts, auth_token=TOKEN))

    def test_cell_needs_the_token(self) -> None:
        """``/public/info`` and ``/public/greet`` are endpoints' paths, yet never run a cell without the token."""
        for static, answer in self.answers.items():
            for path in ("/public/info", "/public/greet", "/%70ublic/info", "/publi%63/info", "/%70ublic/greet"):
                status, body = answer("GET", path, False)
                self.assertNotEqual(status, 200, (static, path))
                self.assertNotIn(b"print", body, (static, path))

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_encoding_never_changes_the_answer(self, data: st.DataObject) -> None:
        """A percent-encoded variant of any endpoint gets the plain path's answer, with and without the token."""
        answer = self.answers[data.draw(st.booleans())]
        method, path = data.draw(st.sampled_from(NOTEBOOK_ROUTES))
        encoded = data.draw(encodings(path))
        for token in (False, True):
            self.assertEqual(answer(method, encoded, token), answer(method, path, token), encoded)

    def test_encoded_slash_joins_nothing(self) -> None:
        """``/public%2Finfo`` and kin are one segment: 401 without the token, and no cell's code with it."""
        for answer in self.answers.values():
            for method, path in NOTEBOOK_ROUTES:
                for joined in joined_segments(path):
                    self.assertEqual(answer(method, joined, False)[0], 401, joined)
                    self.assertNotEqual(answer(method, joined, True)[0], 200, joined)
