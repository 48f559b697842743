"""Gateway policies on the real daemon with real ipykernel kernels.

Kernel environment (what a kernel really sees, over the channels WebSocket),
base URL, preflight, sessions, the kernel limit under concurrent requests,
prespawned and seeded kernels, seed failures and startup refusals.  One
daemon per group of checks keeps the suite lean.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration import ws
from tests.integration.daemon import RESOURCES, Client, Daemon, pid_alive, poll_until

TOKEN = "fake-secret"


def stdout_of(messages: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["channel"] == "iopub" and m["header"]["msg_type"] == "stream" and m["content"].get("name") == "stdout"
    )


@defer.inlineCallbacks
def run_code(daemon: Daemon, kernel_id: str, code: str, token: str = "", base: str = "/") -> Any:
    """Execute ``code`` on a kernel over the channels WebSocket; fire with its stdout."""
    connection = yield ws.connect(daemon.ws_url, kernel_id, token=token, base=base)
    try:
        messages = yield connection.execute(code)
    finally:
        yield connection.close()
    return stdout_of(messages)


ENV_PROBE = (
    "import os, json\n"
    "print(json.dumps({k: os.environ.get(k) for k in "
    "['KERNEL_FOO', 'NOT_KERNEL', 'KERNEL_GATEWAY', 'TEST_VAR', 'KG_AUTH_TOKEN', 'KGD_SHUTDOWN_WAIT_TIME', "
    "'DAEMON_SECRET', 'DAEMON_SHARED', 'PATH']}))"
)


class EnvironmentAndWebTests(unittest.TestCase):
    """One daemon with a token (from KG_AUTH_TOKEN), a base URL, whitelists and CORS."""

    timeout = 180

    @defer.inlineCallbacks
    def setUp(self) -> None:
        self.daemon = Daemon(
            ["--base-url", "/gw", "--list-kernels", "--env-whitelist", "TEST_VAR", "--env-process-whitelist", "DAEMON_SHARED",
             "--allow-origin", "https://app.example", "--allow-methods", "GET,POST", "--max-body-size", "1K"],
            env={
                "KG_AUTH_TOKEN": TOKEN,
                "KGD_SHUTDOWN_WAIT_TIME": "4",
                "DAEMON_SECRET": "daemon-secret",
                "DAEMON_SHARED": "shared",
            },
        )
        yield self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.client = Client(self.daemon, token=TOKEN, base="/gw/")

    @defer.inlineCallbacks
    def probe(self, body: dict[str, Any]) -> Any:
        status, _, model = yield self.client.request("POST", "/api/kernels", body)
        self.assertEqual(status, 201, model)
        out = yield run_code(self.daemon, model["id"], ENV_PROBE, token=TOKEN, base="/gw/")
        return json.loads(out)

    @defer.inlineCallbacks
    def test_kernel_environment(self) -> None:
        """With ``env``: whitelists apply (reference test 17); without: the daemon's env minus KG_*/KGD_*; never the token."""
        seen = yield self.probe(
            {
                "env": {
                    "KERNEL_FOO": "kernel-foo-value",
                    "NOT_KERNEL": "ignored",
                    "KERNEL_GATEWAY": "overridden",
                    "TEST_VAR": "allowed",
                    "KG_AUTH_TOKEN": "forged",
                }
            }
        )
        self.assertEqual(
            {k: v for k, v in seen.items() if k != "PATH"},
            {
                "KERNEL_FOO": "kernel-foo-value",
                "NOT_KERNEL": None,
                "KERNEL_GATEWAY": "1",
                "TEST_VAR": "allowed",
                "KG_AUTH_TOKEN": None,
                "KGD_SHUTDOWN_WAIT_TIME": None,
                "DAEMON_SECRET": None,
                "DAEMON_SHARED": "shared",
            },
        )
        self.assertEqual(seen["PATH"], os.environ["PATH"])

        seen = yield self.probe({})
        self.assertEqual(seen["DAEMON_SECRET"], "daemon-secret")
        self.assertIsNone(seen["KG_AUTH_TOKEN"])  # reference test 19
        self.assertIsNone(seen["KGD_SHUTDOWN_WAIT_TIME"])
        self.assertEqual(seen["KERNEL_GATEWAY"], "1")

    @defer.inlineCallbacks
    def test_bad_env_and_bodies(self) -> None:
        """Bad ``env`` values and bad JSON are 400s; a body above --max-body-size is 413; no kernel starts."""
        for body, message in [
            # Shapes are checked against the published schema, which names the field that is wrong.
            ({"env": ["KERNEL_X"]}, "env: ['KERNEL_X'] is not of type 'object'"),
            ({"env": {"KERNEL_X": 1}}, "env/KERNEL_X: 1 is not of type 'string'"),
            ({"env": {"BAD NAME": "x"}}, "env name 'BAD NAME' is not a valid variable name"),
            (b"{nope", "Invalid JSON in body of request"),
        ]:
            status, _, error = yield self.client.request("POST", "/api/kernels", body)
            self.assertEqual((status, error), (400, {"reason": "Bad Request", "message": message}), body)
        status, _, error = yield self.client.request("POST", "/api/kernels", {"env": {"KERNEL_X": "x" * 2000}})
        self.assertEqual((status, error["reason"]), (413, "Request Entity Too Large"))
        status, _, listed = yield self.client.request("GET", "/api/kernels")
        self.assertEqual((status, listed), (200, []))

    @defer.inlineCallbacks
    def test_base_url_preflight_and_sessions(self) -> None:
        """Routes live under /gw with or without the slash; preflight needs no token; sessions work end to end."""
        status, _, _ = yield Client(self.daemon, token=TOKEN, base="/gw").request("GET", "/api")
        self.assertEqual(status, 200)
        status, _, _ = yield Client(self.daemon, token=TOKEN).request("GET", "/api")
        self.assertEqual(status, 404)
        status, headers, body = yield Client(self.daemon, base="/gw/").request(
            "OPTIONS", "/api/kernels", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
        self.assertEqual((status, body), (200, None))
        self.assertEqual(headers.getRawHeaders(b"access-control-allow-methods"), [b"GET,POST"])
        status, _, _ = yield self.client.request("GET", "/api", headers={"Origin": "https://evil.example"})
        self.assertEqual(status, 404)

        status, headers, session = yield self.client.request("POST", "/api/sessions", {"path": "nb.ipynb", "type": "notebook"})
        self.assertEqual(status, 201, session)
        self.assertEqual(headers.getRawHeaders(b"location"), [f"/gw/api/sessions/{session['id']}".encode()])
        status, _, fetched = yield self.client.request("GET", f"/api/sessions/{session['id']}")
        self.assertEqual((status, fetched["kernel"]["id"]), (200, session["kernel"]["id"]))
        status, _, patched = yield self.client.request("PATCH", f"/api/sessions/{session['id']}", {"name": "renamed"})
        self.assertEqual((status, patched["name"]), (200, "renamed"))
        status, _, _ = yield self.client.request("DELETE", f"/api/sessions/{session['id']}")
        self.assertEqual(status, 204)
        status, _, listed = yield self.client.request("GET", "/api/kernels")
        self.assertEqual(listed, [])


class LimitTests(unittest.TestCase):
    """--max-kernels under concurrent requests, and kernel names."""

    timeout = 180

    @defer.inlineCallbacks
    def test_concurrent_posts_never_exceed_the_limit(self) -> None:
        """Five concurrent POSTs with --max-kernels 2: two 201s, three 403 Resource Limit; a DELETE frees a slot."""
        daemon = Daemon(["--max-kernels", "2", "--list-kernels", "--force-kernel-name", "python3"])
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)
        results = yield defer.gatherResults([client.request("POST", "/api/kernels", {"name": "fake-kernel"}) for _ in range(5)])
        statuses = sorted(status for status, _, _ in results)
        self.assertEqual(statuses, [201, 201, 403, 403, 403])
        for status, _, body in results:
            if status == 403:
                self.assertEqual(body, {"reason": "Forbidden", "message": "Resource Limit"})
            else:
                self.assertEqual(body["name"], "python3")  # --force-kernel-name wins over the request
        status, _, listed = yield client.request("GET", "/api/kernels")
        self.assertEqual(len(listed), 2)
        status, _, _ = yield client.request("DELETE", f"/api/kernels/{listed[0]['id']}")
        self.assertEqual(status, 204)
        status, _, _ = yield client.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201)
        self.assertEqual(len(daemon.kernel_pids), 3)

    @defer.inlineCallbacks
    def test_default_kernel_name(self) -> None:
        """--default-kernel-name applies to requests naming no kernel; an unknown default is a clear error, not a hang."""
        daemon = Daemon(["--default-kernel-name", "fake-kernel"])
        yield daemon.start()
        self.addCleanup(daemon.stop)
        status, _, error = yield Client(daemon).request("POST", "/api/kernels", {})
        self.assertEqual(status, 404)
        self.assertIn("fake-kernel", error["message"])
        status, _, model = yield Client(daemon).request("POST", "/api/kernels", {"name": "python3"})
        self.assertEqual((status, model["name"]), (201, "python3"))


class PrespawnAndSeedTests(unittest.TestCase):
    """Prespawned, seeded kernels are handed out first and replaced."""

    timeout = 180

    @defer.inlineCallbacks
    def test_prespawned_seeded_kernels_handed_out(self) -> None:
        """Two kernels start at once (reference test 23); a POST gets one of them, seeded with zen (test 21, 25); the pool refills."""
        daemon = Daemon(
            ["--prespawn-count", "2", "--seed-uri", os.path.join(RESOURCES, "zen.ipynb"),
             "--force-kernel-name", "python3", "--list-kernels", "--max-kernels", "3"]
        )
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)

        @defer.inlineCallbacks
        def listed() -> Any:
            _, _, kernels = yield client.request("GET", "/api/kernels")
            return kernels

        prespawned = yield poll_until(lambda: listed().addCallback(lambda ks: ks if len(ks) == 2 else None), timeout=60)
        status, _, model = yield client.request("POST", "/api/kernels", {"name": "fake-kernel"})
        self.assertEqual((status, model["name"]), (201, "python3"))
        self.assertIn(model["id"], [k["id"] for k in prespawned])
        self.assertEqual(model["execution_state"], "idle")
        out = yield run_code(daemon, model["id"], "print(this.s)")
        self.assertIn("Gur Mra bs Clguba", out)
        yield poll_until(lambda: listed().addCallback(lambda ks: len(ks) == 3), timeout=60)
        # At the limit now (1 taken + 2 pooled): the pool cannot refill, but POSTs still get the pooled kernels.
        pooled = [k["id"] for k in (yield listed()) if k["id"] != model["id"]]
        for _ in range(2):
            status, _, taken = yield client.request("POST", "/api/kernels", {})
            self.assertEqual(status, 201)
            self.assertIn(taken["id"], pooled)
        status, _, error = yield client.request("POST", "/api/kernels", {})
        self.assertEqual((status, error["message"]), (403, "Resource Limit"))
        self.assertEqual(len(daemon.kernel_pids), 3)

    @defer.inlineCallbacks
    def test_failing_seed(self) -> None:
        """A failing seed cell makes POST a 500 naming the error, logged, with no kernel left (reference test 26)."""
        daemon = Daemon(["--seed-uri", os.path.join(RESOURCES, "failing_code.ipynb"), "--list-kernels"])
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)
        status, _, error = yield client.request("POST", "/api/kernels", {})
        self.assertEqual(status, 500)
        self.assertIn("Error seeding kernel memory", error["message"])
        self.assertIn("SyntaxError", error["message"])
        self.assertIn(b"Error seeding kernel memory", daemon.log)
        status, _, listed = yield client.request("GET", "/api/kernels")
        self.assertEqual(listed, [])
        self.assertEqual([pid for pid in daemon.kernel_pids if pid_alive(pid)], [])

    @defer.inlineCallbacks
    def test_startup_refusals(self) -> None:
        """Unusable seeds and prespawn above the limit stop the daemon before it listens, with a one-line reason."""
        for args, reason in [
            (["--seed-uri", os.path.join(RESOURCES, "unknown_kernel.ipynb")], b"needs kernelspec 'fakelang2000'"),
            (
                ["--seed-uri", os.path.join(RESOURCES, "unknown_kernel.ipynb"), "--force-kernel-name", "python3"],
                b"is written in fakelang but kernelspec 'python3' runs python",
            ),
            (["--prespawn-count", "3", "--max-kernels", "2"], b"--prespawn-count: 3 kernels cannot start under --max-kernels 2"),
        ]:
            daemon = Daemon(args)
            try:
                yield daemon.start()
            except AssertionError:
                pass
            else:
                yield daemon.stop()
                self.fail(f"kgd started with {args}")
            self.assertNotEqual(daemon.exit_code, 0)
            self.assertIn(reason, daemon.log)
            self.assertNotIn(b"Traceback", daemon.log)


class CullingTests(unittest.TestCase):
    """Culling on the real daemon."""

    timeout = 120

    @defer.inlineCallbacks
    def test_idle_kernels_culled_pool_kept(self) -> None:
        """With a 1 s timeout and interval, a started kernel is culled and logged; the prespawned one stays."""
        daemon = Daemon(["--cull-idle-timeout", "1", "--cull-interval", "1", "--prespawn-count", "1", "--list-kernels"])
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)

        @defer.inlineCallbacks
        def kernel_ids() -> Any:
            _, _, kernels = yield client.request("GET", "/api/kernels")
            return [k["id"] for k in kernels]

        pooled = yield poll_until(lambda: kernel_ids().addCallback(lambda ids: ids if len(ids) == 1 else None), timeout=60)
        status, _, model = yield client.request("POST", "/api/kernels", {"env": {}})
        self.assertEqual(status, 201)
        self.assertNotIn(model["id"], pooled)
        yield poll_until(lambda: kernel_ids().addCallback(lambda ids: ids == pooled), timeout=30)
        self.assertIn(f"Culling 'idle' kernel 'python3' ({model['id']})".encode(), daemon.log)
