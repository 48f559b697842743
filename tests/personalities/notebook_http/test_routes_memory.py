"""NotebookRoutes in memory: Klein over treq's StubTreq, a pool whose kernel is a recording fake.

What a notebook-http client sees from the routing layer itself: which
requests reach a kernel and with what REQUEST, how the kernel's response and
the pool's failures become HTTP, and the errors answered without a kernel.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from kgd.personalities.notebook_http.annotations import parse_notebook
from kgd.personalities.notebook_http.kernel_pool import PoolUnavailable, RequestTimeout
from kgd.personalities.notebook_http.outputs import HTTPResponse
from kgd.personalities.notebook_http.personality import NotebookHttpPersonality
from kgd.personalities.notebook_http.routes import NotebookRoutes
from kgd.web.resource import GatewayResource, Mount

TOKEN = "route-secret"
CELLS = [
    ("code", "# GET /hello/:name\nprint('hello')"),
    ("code", "# PUT /hello/:name\nprint('put')"),
    ("code", "# POST /people\nprint('posted')"),
]


class FakeExecutor:
    """A pooled kernel that records what it was asked to run and answers a set response."""

    def __init__(self) -> None:
        self.ran: list[tuple[str | None, str, str | None]] = []
        self.response = HTTPResponse(200, (("Content-Type", "text/plain"),), b"hello\n")

    def respond(self, assignment: str | None, source: str, response_source: str | None) -> defer.Deferred[HTTPResponse]:
        self.ran.append((assignment, source, response_source))
        return defer.succeed(self.response)


class FakePool:
    """A pool of one fake kernel, or a pool failing every request with ``failure``."""

    def __init__(self) -> None:
        self.executor = FakeExecutor()
        self.failure: Exception | None = None
        self.timeouts: list[float] = []

    def serve(self, work: Callable[[FakeExecutor], defer.Deferred[Any]], timeout: float = 0.0) -> defer.Deferred[Any]:
        self.timeouts.append(timeout)
        if self.failure is not None:
            return defer.fail(self.failure)
        return work(self.executor)


class NotebookRoutesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pool = FakePool()
        routes = NotebookRoutes(
            parse_notebook(CELLS),
            self.pool,  # type: ignore[arg-type]
            swagger=b"{}",
            auth_token=TOKEN,
            request_timeout=7.0,
        )
        # Behind the gateway's resource, as the daemon mounts it: it decodes the path the routes match.
        mount = Mount((), routes.app.resource(), NotebookHttpPersonality().is_public)
        self.client = StubTreq(GatewayResource("/", [mount], auth_token=TOKEN))

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        kwargs.setdefault("headers", {}).setdefault("Authorization", f"token {TOKEN}")
        response = self.successResultOf(self.client.request(method, "http://127.0.0.1" + path, **kwargs))
        body = self.successResultOf(response.content())
        return response.code, response.headers, body

    def request_seen(self) -> dict[str, Any]:
        """The REQUEST the kernel was given, decoded from the assignment statement."""
        assignment, _, _ = self.pool.executor.ran[-1]
        assert assignment is not None
        return json.loads(json.loads(assignment.partition("=")[2]))

    def test_endpoint_runs_on_a_kernel(self) -> None:
        """A matching request runs the endpoint's cell with REQUEST and answers the kernel's response, with an ETag."""
        status, headers, body = self.call("GET", "/hello/ann?x=1")
        self.assertEqual((status, body), (200, b"hello\n"))
        self.assertEqual(headers.getRawHeaders("Content-Type"), ["text/plain"])
        self.assertIsNotNone(headers.getRawHeaders("ETag"))
        _, source, _ = self.pool.executor.ran[-1]
        self.assertIn("print('hello')", source)
        seen = self.request_seen()
        self.assertEqual((seen["path"], seen["args"]), ({"name": "ann"}, {"x": ["1"]}))
        self.assertEqual(self.pool.timeouts, [7.0])

    def test_gateway_token_kept_from_kernel(self) -> None:
        """The gateway token, in the header or the query, never reaches REQUEST."""
        self.call("GET", f"/hello/ann?token={TOKEN}", headers={"Authorization": f"token {TOKEN}"})
        seen = self.request_seen()
        self.assertNotIn("token", seen["args"])
        self.assertNotIn("Authorization", seen["headers"])

    def test_method_not_allowed_without_a_kernel(self) -> None:
        """A known path with another method is a 405 naming the allowed methods, answered without a kernel."""
        status, headers, body = self.call("DELETE", "/hello/ann")
        self.assertEqual(status, 405)
        self.assertEqual(headers.getRawHeaders("Allow"), ["GET, PUT"])
        self.assertEqual(json.loads(body)["reason"], "Method Not Allowed")
        self.assertEqual(self.pool.executor.ran, [])

    def test_unknown_path(self) -> None:
        """A path no cell declares is a JSON 404, answered without a kernel."""
        status, _, body = self.call("GET", "/nowhere")
        self.assertEqual((status, json.loads(body)["reason"]), (404, "Not Found"))
        self.assertEqual(self.pool.executor.ran, [])

    def test_bad_json_body(self) -> None:
        """A body its Content-Type cannot decode is a JSON 400, answered without a kernel."""
        status, _, body = self.call("POST", "/people", data=b"{bad", headers={"Content-Type": "application/json"})
        self.assertEqual((status, json.loads(body)["reason"]), (400, "Bad Request"))
        self.assertEqual(self.pool.executor.ran, [])

    def test_no_body_statuses(self) -> None:
        """A 204 from the notebook is sent without a body."""
        self.pool.executor.response = HTTPResponse(204, (), b"ignored")
        status, _, body = self.call("PUT", "/hello/ann")
        self.assertEqual((status, body), (204, b""))

    def test_pool_failures(self) -> None:
        """A request timeout is a 504 and an unusable pool a 503, each with a JSON reason."""
        for failure, code in ((RequestTimeout("too slow"), 504), (PoolUnavailable("no kernel"), 503)):
            self.pool.failure = failure
            status, _, body = self.call("GET", "/hello/ann")
            self.assertEqual(status, code)
            self.assertIn("reason", json.loads(body))

    def test_source_not_offered(self) -> None:
        """Without --allow-notebook-download the notebook source is a 404."""
        self.assertEqual(self.call("GET", "/_api/source")[0], 404)
