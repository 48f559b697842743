"""notebook-http end to end: the real daemon, real ipykernel kernels, real HTTP.

Ports the reference gateway's test_notebook_http.py behaviours (section 5.2
of the reference inventory) and checks kgd's fixes: a 405 that does not wait
for a kernel, ``input()`` and a dying kernel that fail the request instead of
hanging it, a request timeout, a failed seed that answers 503 and still lets
SIGTERM stop the daemon, the token kept out of ``REQUEST``, CORS in this
mode, the swagger-cell parser answering requests, and both personalities on
one daemon.  Checks are grouped per daemon to keep the file fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping
from urllib.parse import quote

import treq
from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import TestCase

from tests.integration.daemon import REPO_ROOT, RESOURCES, TWISTD, Daemon, poll_until
from tests.integration.fifo_gate import gate, release
from tests.responses import Response

TOKEN = "notebook-secret"


@defer.inlineCallbacks
def fetch(
    daemon: Daemon,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    token: str = "",
) -> Any:
    """Send one request; fires with a ``Response`` (the body is never parsed)."""
    sent = {name.encode(): [value.encode()] for name, value in (headers or {}).items()}
    if token:
        sent[b"Authorization"] = [f"token {token}".encode()]
    response = yield treq.request(method, daemon.url + path, data=body, headers=sent, persistent=False)
    content = yield response.content()
    return Response(response.code, response.headers, content)


def notebook(name: str) -> str:
    return os.path.join(RESOURCES, name)


def hold(path: str) -> str:
    """kernel_api.ipynb's endpoint that keeps its kernel busy until the FIFO at ``path`` is released."""
    return f"/hold?gate={quote(path)}"


def released(path: str, until: defer.Deferred[Any]) -> defer.Deferred[Any]:
    """Release the cells waiting on ``path`` (those that open it later too) until ``until`` has fired; fire with its
    result (which ``until`` then no longer carries)."""
    return poll_until(lambda: (release(path), until.called)[1]).addCallback(lambda _: until)


@defer.inlineCallbacks
def started(test: TestCase, *args: str) -> Any:
    """A notebook-http daemon with ``args``, stopped (and checked for leftover kernels) after the test."""
    daemon = Daemon(["--api", "notebook-http", *args])
    test.addCleanup(daemon.stop)
    yield daemon.start()
    return daemon


class KernelApiTests(TestCase):
    """kernel_api.ipynb on one kernel, with a token, notebook download, static files and a timeout.

    Each test names one behaviour and gets a daemon of its own, so none depends on another's state.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.daemon = yield started(
            self,
            "--seed-uri", notebook("kernel_api.ipynb"),
            "--auth-token", TOKEN,
            "--allow-notebook-download",
            "--static-path", os.path.join(RESOURCES, "public"),
            "--request-timeout", "3",
        )  # fmt: skip

    def get(self, path: str, **kwargs: Any) -> defer.Deferred[Response]:
        """A request with the token, GET unless ``method`` says otherwise."""
        return fetch(self.daemon, kwargs.pop("method", "GET"), path, token=TOKEN, **kwargs)

    @defer.inlineCallbacks
    def test_greetings(self) -> Any:
        """Plain, path-parameter and query-argument endpoints answer the cell's stdout as text/plain."""
        hello = yield self.get("/hello")
        self.assertEqual((hello.status, hello.body), (200, b"hello world\n"))
        self.assertEqual(hello.header("Content-Type"), "text/plain")
        self.assertEqual((yield self.get("/hello/governor")).body, b"hello governor\n")
        self.assertEqual((yield self.get("/hello/x%20y")).body, b"hello x y\n")
        self.assertEqual((yield self.get("/hello/person?person=governor")).body, b"hello governor\n")
        persons = yield self.get("/hello/persons?person=governor&person=rick")
        self.assertEqual(persons.body, b"hello governor, rick\n")

    @defer.inlineCallbacks
    def test_etag(self) -> Any:
        """GETs carry an ETag, as tornado gave them; a matching If-None-Match is a 304 without a body."""
        hello = yield self.get("/hello")
        etag = yield self.get("/hello/person?person=governor", headers={"If-None-Match": '""9a28a9262f954494a8de7442c63d6d0715ce0998""'})
        self.assertEqual((etag.status, etag.body), (200, b"hello governor\n"))
        cached = yield self.get("/hello", headers={"If-None-Match": hello.header("ETag") or ""})
        self.assertEqual((cached.status, cached.body), (304, b""))

    @defer.inlineCallbacks
    def test_state_between_requests(self) -> Any:
        """What one request leaves in the kernel, the next one sees."""
        put = yield self.get("/message", method="PUT", body=b"hola {}")
        self.assertEqual((put.status, put.body), (200, b"hola {}\n"))
        self.assertEqual((yield self.get("/message")).body, b"hola {}\n")

    @defer.inlineCallbacks
    def test_bodies_by_content_type(self) -> Any:
        """JSON (with or without charset) and form bodies reach REQUEST parsed; undecodable JSON is a JSON 400."""
        crew = ["Rick", "Maggie", "Glenn", "Carol", "Daryl"]
        posted = yield self.get("/people", method="POST", body=json.dumps(crew).encode(), headers={"Content-Type": "application/json"})
        self.assertEqual((posted.status, posted.json()), (200, crew))
        deleted = yield self.get("/people/2", method="DELETE")
        self.assertEqual(deleted.json(), ["Rick", "Maggie", "Carol", "Daryl"])
        charset = yield self.get(
            "/people", method="POST", body=b'["Ann"]', headers={"Content-Type": "application/json; charset=utf-8"}
        )
        self.assertEqual(charset.json(), ["Ann"])
        form = yield self.get(
            "/people", method="POST", body=b"a=1&a=2&b=x%20y", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        self.assertEqual(form.json(), {"a": ["1", "2"], "b": ["x y"]})
        bad_json = yield self.get("/people", method="POST", body=b"{bad", headers={"Content-Type": "application/json"})
        self.assertEqual(bad_json.status, 400)
        self.assertEqual(bad_json.json()["reason"], "Bad Request")

    @defer.inlineCallbacks
    def test_outputs(self) -> Any:
        """Errors are a 500 with the error text; stderr is dropped; execute_result, joined cells and the kernel env come through."""
        error = yield self.get("/error")
        self.assertEqual(error.status, 500)
        self.assertTrue(error.body.startswith(b"Error SyntaxError: "), error.body)
        self.assertEqual((yield self.get("/stderr")).body, b"I am text on stdout\n")
        self.assertEqual((yield self.get("/execute_result")).body, b'{"text/plain": "2"}')
        self.assertEqual((yield self.get("/multi")).body, b"x is 1\n")
        self.assertEqual((yield self.get("/env_kernel_gateway")).body, b"KERNEL_GATEWAY is 1\n")
        for content_type in ("text/plain", "application/json", "application/atom+xml", "foo"):
            echoed = yield self.get("/content-type", headers={"Content-Type": content_type})
            self.assertEqual(echoed.body, f"{content_type}\n".encode())

    @defer.inlineCallbacks
    def test_routing_errors_do_not_wait(self) -> Any:
        """An unknown path is a JSON 404; a wrong method a 405 with Allow, at once even while the only kernel is busy."""
        missing = yield self.get("/not/an/endpoint")
        self.assertEqual((missing.status, missing.json()["reason"]), (404, "Not Found"))
        busy = gate(self)
        slow = self.get(hold(busy))
        not_allowed = yield self.get("/message", method="DELETE")  # the kernel stays busy until released below
        self.assertFalse(slow.called)
        self.assertEqual((not_allowed.status, not_allowed.header("Allow")), (405, "GET, PUT"))
        self.assertEqual(not_allowed.json()["reason"], "Method Not Allowed")
        answer = yield released(busy, slow)
        self.assertEqual((answer.status, answer.body), (200, b"released\n"))

    @defer.inlineCallbacks
    def test_token(self) -> Any:
        """The token is required, may come as ?token=, and never reaches REQUEST."""
        self.assertEqual((yield fetch(self.daemon, "GET", "/hello")).status, 401)
        seen = json.loads((yield fetch(self.daemon, "GET", f"/request?a=1&token={TOKEN}")).body)
        self.assertEqual(seen["args"], {"a": ["1"]})
        seen = json.loads((yield self.get("/request")).body)
        self.assertNotIn("Authorization", seen["headers"])

    @defer.inlineCallbacks
    def test_swagger_and_source(self) -> Any:
        """The swagger document and, with the token, the notebook's own bytes are served."""
        spec = yield self.get("/_api/spec/swagger.json")
        self.assertEqual(spec.header("Content-Type"), "application/json")
        self.assertEqual(spec.json()["info"]["title"], "kernel_api")
        self.assertIn("/hello/:person", spec.json()["paths"])
        self.assertEqual((yield fetch(self.daemon, "GET", "/_api/source")).status, 401)
        source = yield self.get("/_api/source")
        with open(notebook("kernel_api.ipynb"), "rb") as f:
            self.assertEqual((source.status, source.body), (200, f.read()))
        self.assertEqual(set(source.json()) >= {"cells", "metadata", "nbformat", "nbformat_minor"}, True)

    @defer.inlineCallbacks
    def test_public_files(self) -> Any:
        """Static files under /public/ are served without a token; a directory is 403, a miss or an escape 404."""
        index = yield fetch(self.daemon, "GET", "/public/index.html")
        self.assertEqual(index.status, 200)
        self.assertTrue((index.header("Content-Type") or "").startswith("text/html"))
        self.assertEqual((yield fetch(self.daemon, "GET", "/public/")).status, 403)
        self.assertEqual((yield fetch(self.daemon, "GET", "/public/missing.html")).status, 404)
        self.assertEqual((yield fetch(self.daemon, "GET", "/public/..%2Fkernel_api.ipynb")).status, 404)
        # One decoded path for the token check, /public/ and the endpoints: encoding changes nothing.
        encoded = yield fetch(self.daemon, "GET", "/%70ublic/index.html")
        self.assertEqual((encoded.status, encoded.body), (index.status, index.body))
        self.assertEqual((yield fetch(self.daemon, "GET", "/publi%63/")).status, 403)
        self.assertEqual((yield fetch(self.daemon, "GET", "/public%2Findex.html")).status, 401)
        self.assertEqual((yield fetch(self.daemon, "GET", "/hell%6F")).status, 401)
        self.assertEqual((yield self.get("/hell%6F")).body, (yield self.get("/hello")).body)
        # DNS rebinding: a loopback listener answers only loopback names.
        rebound = yield fetch(self.daemon, "GET", "/public/index.html", headers={"Host": "evil.example"})
        self.assertEqual((rebound.status, rebound.json()["reason"]), (403, "Forbidden"))

    @defer.inlineCallbacks
    def test_failures_never_hang(self) -> Any:
        """input(), a timeout and a dying kernel fail the request; the pool recovers with a re-seeded kernel."""
        yield self.get("/message", method="PUT", body=b"hola {}")
        asked = yield self.get("/input")
        self.assertEqual(asked.status, 500)
        self.assertIn(b"StdinNotImplementedError", asked.body)
        timed_out = yield self.get(hold(gate(self)))  # never released
        self.assertEqual(timed_out.status, 504)
        self.assertEqual(timed_out.json()["reason"], "Gateway Timeout")
        self.assertEqual((yield self.get("/hello")).body, b"hola world\n")  # interrupted, state kept
        died = yield self.get("/die")
        self.assertEqual(died.status, 500)
        self.assertIn("died", died.json()["message"])
        self.assertEqual((yield self.get("/hello")).body, b"hello world\n")
        self.assertEqual((yield self.get("/message")).body, b"hello {}\n")  # a fresh, re-seeded kernel
        self.assertGreaterEqual(len(self.daemon.kernel_pids), 2)


class PoolTests(TestCase):
    """kernel_api.ipynb on a pool of three kernels."""

    timeout = 120

    @defer.inlineCallbacks
    def test_pool_of_three(self) -> Any:
        """Round-robin hand-out, parallel requests, and SIGTERM with a request in flight."""
        daemon = yield started(self, "--seed-uri", notebook("kernel_api.ipynb"), "--prespawn-count", "3")
        yield poll_until(lambda: daemon.log.count(b"joined the pool") == 3)

        put = yield fetch(daemon, "PUT", "/message", b"hola {}")
        self.assertEqual(put.status, 200)
        bodies = []
        for _ in range(3):
            bodies.append((yield fetch(daemon, "GET", "/message")).body)
        self.assertEqual(bodies, [b"hello {}\n", b"hello {}\n", b"hola {}\n"])

        slow_gate, fast_gate = gate(self), gate(self)
        slow = fetch(daemon, "GET", hold(slow_gate))
        fast = yield released(fast_gate, fetch(daemon, "GET", hold(fast_gate)))
        self.assertEqual(fast.status, 200)
        self.assertFalse(slow.called, "a request waited for another kernel's busy one")
        self.assertEqual((yield released(slow_gate, slow)).status, 200)

        # Seven requests for three kernels, each busy until released: the rest queue, and all are answered.
        shared = gate(self)
        many = yield released(shared, defer.gatherResults([fetch(daemon, "GET", hold(shared)) for _ in range(7)]))
        self.assertEqual([r.status for r in many], [200] * 7)

        in_flight = fetch(daemon, "GET", hold(gate(self)))  # never released
        self.assertEqual((yield fetch(daemon, "GET", "/hello")).status, 200)
        yield daemon.stop(timeout=15)
        self.assertEqual(daemon.exit_code, 0)
        outcome = yield in_flight.addErrback(lambda failure: failure)
        if isinstance(outcome, Response):
            self.assertEqual(outcome.status, 503)


class BothPersonalitiesTests(TestCase):
    """jupyter-websocket at the base URL (/gw/) and notebook-http below /gw/notebook-http/, one daemon."""

    timeout = 120

    @defer.inlineCallbacks
    def test_both_personalities(self) -> Any:
        """ResponseInfo status and headers, CORS and the Origin check, and the kernels API beside it."""
        daemon = Daemon(
            [
                "--api", "jupyter-websocket", "--api", "notebook-http",
                "--seed-uri", notebook("responses.ipynb"), "--prespawn-count", "2",
                "--allow-origin", "https://app.example", "--base-url", "/gw/",
            ]
        )  # fmt: skip
        self.addCleanup(daemon.stop)
        yield daemon.start()

        self.assertEqual((yield fetch(daemon, "GET", "/gw/api")).status, 200)
        as_json = yield fetch(daemon, "GET", "/gw/notebook-http/json", headers={"Origin": "https://app.example"})
        self.assertEqual((as_json.status, as_json.json()), (200, {"hello": "world"}))
        self.assertEqual(as_json.header("Content-Type"), "application/json")
        self.assertEqual(as_json.header("Access-Control-Allow-Origin"), "https://app.example")
        nothing = yield fetch(daemon, "GET", "/gw/notebook-http/nocontent")
        self.assertEqual((nothing.status, nothing.body), (204, b""))
        etag = yield fetch(daemon, "GET", "/gw/notebook-http/etag")
        self.assertEqual((etag.status, etag.header("ETag"), etag.header("Content-Type")), (200, "1234567890", "application/json"))
        evil = yield fetch(daemon, "GET", "/gw/notebook-http/json", headers={"Origin": "https://evil.example"})
        self.assertNotEqual(evil.status, 200)
        self.assertNotEqual(evil.header("Access-Control-Allow-Origin"), "https://evil.example")
        spec = yield fetch(daemon, "GET", "/gw/notebook-http/_api/spec/swagger.json")
        self.assertEqual(sorted(spec.json()["paths"]), ["/etag", "/json", "/nocontent"])
        self.assertEqual((yield fetch(daemon, "GET", "/gw/json")).status, 404)

        both = yield defer.gatherResults([fetch(daemon, "GET", "/gw/notebook-http/json") for _ in range(6)])
        self.assertEqual([r.status for r in both], [200] * 6)


class NotebookVariantsTests(TestCase):
    """Other seed notebooks: swagger cells, odd file names, forced kernels, failing seeds, bad settings."""

    timeout = 120

    @defer.inlineCallbacks
    def test_swagger_cell_notebook_answers(self) -> Any:
        """With --cell-parser swagger, operations are routed (the reference answered 405) and the spec is the user's."""
        daemon = yield started(self, "--seed-uri", notebook("swagger_api.ipynb"), "--cell-parser", "swagger")
        self.assertEqual((yield fetch(daemon, "GET", "/hello")).body, b"hello swagger\n")
        item = yield fetch(daemon, "GET", "/item/5")
        self.assertEqual((item.status, item.json()), (200, {"id": "5", "value": "five"}))
        self.assertEqual(item.header("Content-Type"), "application/json")
        created = yield fetch(daemon, "POST", "/item", b"six")
        self.assertEqual((created.status, created.body), (201, b"2\n"))
        spec = (yield fetch(daemon, "GET", "/_api/spec/swagger.json")).json()
        self.assertEqual(spec["info"], {"title": "Swagger cell API", "version": "1.0.0"})

    @defer.inlineCallbacks
    def test_weird_name_and_forced_kernel(self) -> Any:
        """A notebook path with %20 and # loads verbatim; its swagger is the reference's exact document."""
        daemon = yield started(self, "--seed-uri", notebook("weirdly%20named#notebook.ipynb"))
        spec = (yield fetch(daemon, "GET", "/_api/spec/swagger.json")).json()
        success = {"responses": {"200": {"description": "Success"}}}
        self.assertEqual(
            spec,
            {
                "info": {"version": "0.0.0", "title": "weirdly%20named#notebook"},
                "paths": {"/name": {"get": success, "post": success}},
                "swagger": "2.0",
            },
        )
        self.assertEqual((yield fetch(daemon, "POST", "/name", b"Rick")).body, b"Rick\n")
        self.assertEqual((yield fetch(daemon, "GET", "/name")).body, b"Rick\n")

        forced = yield started(self, "--seed-uri", notebook("unknown_kernel.ipynb"), "--force-kernel-name", "python3")
        self.assertEqual((yield fetch(forced, "GET", "/_api/spec/swagger.json")).status, 200)

    @defer.inlineCallbacks
    def test_failed_seed_answers_and_stops(self) -> Any:
        """A failing or never-ending seed cell: requests get 503 with the reason at once,
        and SIGTERM still stops the daemon with no kernel left."""
        hanging = os.path.abspath(self.mktemp())
        os.makedirs(hanging)
        path = os.path.join(hanging, "hanging_seed.ipynb")
        with open(notebook("failing_seed_api.ipynb")) as f:
            content = json.load(f)
        content["cells"][1]["source"] = ["import threading\n", "threading.Event().wait()"]
        with open(path, "w") as f:
            json.dump(content, f)
        failing, stuck = yield defer.gatherResults(
            [
                started(self, "--seed-uri", notebook("failing_seed_api.ipynb")),
                started(self, "--seed-uri", path, "--kernel-start-timeout", "4"),
            ]
        )
        for daemon, reason in ((failing, "ModuleNotFoundError"), (stuck, "ran longer than 4 seconds")):
            yield poll_until(lambda: b"could not be started and seeded" in daemon.log)
            answer = yield fetch(daemon, "GET", "/hello")
            self.assertEqual(answer.status, 503)
            self.assertIn(reason, answer.json()["message"])
            self.assertEqual((yield fetch(daemon, "GET", "/nowhere")).status, 404)
            yield daemon.stop(timeout=15)
            self.assertEqual(daemon.exit_code, 0)

    @defer.inlineCallbacks
    def test_bad_settings_exit_with_one_line(self) -> Any:
        """No seed, no endpoints or an unknown kernelspec: exit 1 with the reason, before listening."""
        cases = [
            ([], "needs --seed-uri"),
            (["--seed-uri", notebook("failing_code.ipynb")], "No endpoints were discovered"),
            (["--seed-uri", notebook("unknown_kernel.ipynb")], "No such kernel named fakelang2000"),
            (["--seed-uri", notebook("no-such-notebook.ipynb")], "--seed-uri: cannot read"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KG_", "KGD_"))}
        env["PYTHONPATH"] = REPO_ROOT
        runs = [
            utils.getProcessOutputAndValue(
                sys.executable,
                ["-c", TWISTD, "-n", "--pidfile=", "kgd", "--listen", "tcp:0:interface=127.0.0.1", "--api", "notebook-http", *args],
                env=env,
                path=REPO_ROOT,
                reactor=reactor,
            )
            for args, _ in cases
        ]
        results = yield defer.gatherResults(runs)
        for (_, expected), (out, err, code) in zip(cases, results):
            self.assertEqual(code, 1, err)
            self.assertIn(expected, err.decode())
            self.assertNotIn(b"Traceback", err)
            self.assertNotIn(b"starting on", out + err)
