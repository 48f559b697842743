"""Tests for the jupyter-websocket REST API, in memory.

The KernelsAPI Klein resource sits behind GatewayResource (base URL, token)
exactly as the daemon serves it, and is reached through ``treq.testing.
StubTreq``; behind it runs a real ``Kernels`` service whose kernels are the
in-memory fakes of ``tests.kernels.fakes``, with a Clock as the reactor.
Every response is checked never to carry a traceback.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import kgd
from kgd.gateway import Gateway
from kgd.kernels.kernel import Kernel
from kgd.kernels.kernels import Kernels
from kgd.options import default_config
from kgd.personalities.jupyter_websocket.personality import JupyterWebsocketPersonality
from kgd.service import personality_settings
from kgd.web.resource import GatewayResource, Mount
from tests.kernels.fakes import FakeLauncher, FakeSockets, temporary_specs, write_kernelspec
from tests.responses import Response

TOKEN = "t0ken"
LOGO = b"\x89PNG\r\n\x1a\n fake"
ROOT = "http://127.0.0.1/base"


class RestTestCase(SynchronousTestCase):
    config_changes: dict[str, Any] = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.sockets = FakeSockets(self.clock)
        self.launcher = FakeLauncher(self.sockets)
        self.kernels_dir = self.mktemp()
        write_kernelspec(self.kernels_dir, "python3", resources={"logo-64x64.png": LOGO, "kernel.js": b"//js"})
        write_kernelspec(self.kernels_dir, "other")
        with open(f"{self.kernels_dir}/secret.txt", "w") as f:
            f.write("outside the spec directory")
        self.specs = temporary_specs(self.kernels_dir)
        self.config = default_config(base_url="/base/", auth_token=TOKEN, **self.config_changes)
        self.kernels = Kernels(
            self.specs,
            self.launcher,
            self.sockets,
            self.clock,
            max_kernels=self.config.max_kernels,
            force_name=self.config.force_kernel_name,
        )
        self.kernels.startService()
        self.addCleanup(self._stop_kernels)
        gateway = Gateway(self.kernels, self.specs, self.clock, base_url=self.config.base_url)
        personality = JupyterWebsocketPersonality()
        resource = personality.resource(personality_settings(personality, self.config), gateway)
        root = GatewayResource(self.config.base_url, [Mount((), resource, personality.is_public)], auth_token=TOKEN)
        self.treq = StubTreq(root)

    def _stop_kernels(self) -> None:
        d = self.kernels.stopService()
        self.clock.advance(30)
        self.successResultOf(d)

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                token: bool = True, headers: dict | None = None, clock_step: float = 0) -> Response:
        """Send a request and run the clock and the in-memory transport until it is answered."""
        all_headers = {"Authorization": [f"token {TOKEN}"]} if token else {}
        all_headers.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        d = self.treq.request(method, ROOT + path, headers=all_headers, data=data)
        for _ in range(10):  # each round delivers what the previous one queued
            self.treq.flush()
            self.clock.advance(0)
            self.clock.advance(clock_step)
        response = self.successResultOf(d)
        content = self.treq.content(response)
        self.treq.flush()
        body_bytes = self.successResultOf(content)
        self.assertNotIn(b"Traceback", body_bytes)
        self.assertNotIn(b"traceback", body_bytes)
        return Response(response.code, response.headers, body_bytes)

    def assertError(self, response: Response, code: int, message: str | None = None) -> dict:
        """The response is a JSON error with this status, the one error shape, and (optionally) this message."""
        self.assertEqual(response.status, code, response.body)
        self.assertEqual(response.header("Content-Type"), "application/json")
        body = response.json()
        self.assertEqual(set(body), {"reason", "message"})
        if message is not None:
            self.assertEqual(body["message"], message)
        return body

    def start(self, body: Any = None) -> dict:
        response = self.request("POST", "/api/kernels", body)
        self.assertEqual(response.status, 201, response.body)
        return response.json()


class VersionAndSpecsTests(RestTestCase):
    def test_version(self) -> None:
        """GET /api reports kgd's own version."""
        response = self.request("GET", "/api")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json(), {"version": kgd.__version__})

    def test_token_required(self) -> None:
        """Without the token, the API answers 401 in the JSON error shape."""
        self.assertError(self.request("GET", "/api/kernelspecs", token=False), 401)

    def test_kernelspecs(self) -> None:
        """GET /api/kernelspecs has the default name and every spec, with resource URLs under the base URL."""
        body = self.request("GET", "/api/kernelspecs").json()
        self.assertEqual(body["default"], "python3")
        self.assertEqual(sorted(body["kernelspecs"]), ["other", "python3"])
        python3 = body["kernelspecs"]["python3"]
        self.assertEqual(python3["name"], "python3")
        self.assertEqual(python3["spec"]["display_name"], "Python3")
        self.assertEqual(python3["spec"]["language"], "python")
        self.assertEqual(
            python3["resources"],
            {"logo-64x64": "/base/kernelspecs/python3/logo-64x64.png", "kernel.js": "/base/kernelspecs/python3/kernel.js"},
        )
        self.assertEqual(body["kernelspecs"]["other"]["resources"], {})

    def test_one_kernelspec(self) -> None:
        """GET /api/kernelspecs/{name} is that spec's model; an unknown name is a 404."""
        response = self.request("GET", "/api/kernelspecs/other")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["name"], "other")
        self.assertError(self.request("GET", "/api/kernelspecs/nope"), 404, "Kernel spec nope not found")

    def test_unreadable_kernelspec(self) -> None:
        """A spec whose kernel.json is broken is left out of the listing and is a 404 to get or to start, never a 500."""
        os.makedirs(f"{self.kernels_dir}/broken")
        with open(f"{self.kernels_dir}/broken/kernel.json", "w") as f:
            f.write("[1, 2]")
        self.assertEqual(sorted(self.request("GET", "/api/kernelspecs").json()["kernelspecs"]), ["other", "python3"])
        self.assertError(self.request("GET", "/api/kernelspecs/broken"), 404)
        body = self.assertError(self.request("POST", "/api/kernels", {"name": "broken"}), 404)
        self.assertIn("cannot be read", body["message"])

    def test_resource_file(self) -> None:
        """A spec's logo is served with its content type and a long cache lifetime."""
        response = self.request("GET", "/kernelspecs/python3/logo-64x64.png")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, LOGO)
        self.assertEqual(response.header("Content-Type"), "image/png")
        self.assertEqual(response.header("Cache-Control"), "max-age=2592000")

    def test_resource_missing_or_outside(self) -> None:
        """Missing files, unknown specs and any path out of the spec's directory are 404s."""
        self.assertError(self.request("GET", "/kernelspecs/python3/missing.png"), 404)
        self.assertError(self.request("GET", "/kernelspecs/nope/logo-64x64.png"), 404)
        for path in (
            "/kernelspecs/python3/..%2Fsecret.txt",
            "/kernelspecs/python3/%2E%2E/secret.txt",
            "/kernelspecs/python3/..%2F..%2F..%2Fetc%2Fpasswd",
            "/kernelspecs/python3/%2Fetc%2Fpasswd",
            "/kernelspecs/python3/logo-64x64.png%00.txt",
            "/kernelspecs/python3//etc/passwd",
        ):
            response = self.request("GET", path)
            self.assertEqual(response.status, 404, path)
            self.assertNotIn(b"outside the spec", response.body)
            self.assertNotIn(b"root:", response.body)


class StartKernelTests(RestTestCase):
    def test_start(self) -> None:
        """POST /api/kernels answers 201 with the kernel model and its Location under the base URL."""
        response = self.request("POST", "/api/kernels", {"name": "other"})
        self.assertEqual(response.status, 201)
        model = response.json()
        self.assertEqual(set(model), {"id", "name", "last_activity", "execution_state", "connections"})
        self.assertEqual(model["name"], "other")
        self.assertEqual(model["connections"], 0)
        self.assertTrue(model["last_activity"].endswith("Z"))
        self.assertEqual(response.header("Location"), f"/base/api/kernels/{model['id']}")
        self.assertIs(type(self.kernels.get(model["id"])), Kernel)

    def test_empty_body_and_lenient_keys(self) -> None:
        """No body, a null path and unknown keys are all accepted; the default kernel starts."""
        self.assertEqual(self.request("POST", "/api/kernels").status, 201)
        self.assertEqual(self.start({"path": None})["name"], "python3")
        self.assertEqual(self.start({"name": "python3", "path": "x.ipynb", "type": "notebook", "extra": [1]})["name"], "python3")

    def test_python_is_the_native_kernel(self) -> None:
        """POST {"name": "python"} (the kernel_gateway_demos clients' body) starts python3, as the reference does."""
        self.assertEqual(self.start({"name": "python"})["name"], "python3")

    def test_unusable_path(self) -> None:
        """A path naming nothing on disk (a NUL byte in it) starts the kernel in the root directory, not a 500."""
        self.start({"path": "nb\u0000.ipynb"})
        self.assertEqual(self.launcher.launches[-1]["cwd"], os.path.realpath(os.getcwd()))

    def test_bad_json(self) -> None:
        """A body that is not JSON is a 400 saying so."""
        self.assertError(self.request("POST", "/api/kernels", raw=b"{name:"), 400, "Invalid JSON in body of request")

    def test_not_an_object(self) -> None:
        """A JSON body that is not an object is a 400."""
        for body in ([], "python3", 3, None):
            self.assertError(self.request("POST", "/api/kernels", raw=json.dumps(body).encode()), 400)

    def test_wrong_types(self) -> None:
        """A name, path or kernel_id of the wrong type is a 400 naming the field."""
        for field, value in (("name", 5), ("name", ["python3"]), ("path", 3), ("kernel_id", 1)):
            body = self.assertError(self.request("POST", "/api/kernels", {field: value}), 400)
            self.assertIn(field, body["message"])
        self.assertEqual(self.launcher.launches, [])

    def test_bad_env(self) -> None:
        """An env that is not an object of valid names to strings is a 400."""
        for env in ([], "A=1", {"1A": "x"}, {"A": 1}, {"A": "a\u0000b"}):
            self.assertError(self.request("POST", "/api/kernels", {"env": env}), 400)
        self.assertEqual(self.launcher.launches, [])

    def test_bad_kernel_id(self) -> None:
        """A kernel_id that is not a UUID is a 400."""
        self.assertError(self.request("POST", "/api/kernels", {"kernel_id": "../x"}), 400)

    def test_unknown_kernelspec(self) -> None:
        """Starting an unknown kernelspec is a 404 naming it (the reference's 500 with a traceback is a defect)."""
        body = self.assertError(self.request("POST", "/api/kernels", {"name": "nope"}), 404)
        self.assertIn("nope", body["message"])

    def test_start_failure(self) -> None:
        """A kernel that cannot be launched is a 500 with a clear message and no traceback."""
        self.launcher.failure = OSError("exec failed")
        body = self.assertError(self.request("POST", "/api/kernels"), 500)
        self.assertIn("exec failed", body["message"])


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["python3", "other", "nope", "", "00000000-0000-0000-0000-000000000001", "a/b", "../..", "a\0b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["KERNEL_A", "A", "1x", ""]) | st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
BODIES = st.dictionaries(st.sampled_from(["name", "path", "env", "kernel_id", "type", "extra"]), JSON_VALUES, max_size=4)


class AnyBodyTests(RestTestCase):
    @settings(max_examples=150, deadline=None)
    @given(BODIES)
    def test_any_json_body_gets_a_clear_answer(self, body: dict) -> None:
        """Whatever JSON object a client posts, POST /api/kernels starts a kernel or answers a JSON 400/404, never a 500."""
        response = self.request("POST", "/api/kernels", body)
        if response.status != 201:
            self.assertIn(self.assertError(response, response.status)["reason"], ("Bad Request", "Not Found"))


SEGMENTS = st.sampled_from(
    ["api", "kernels", "kernelspecs", "python3", "logo-64x64.png", "restart", "interrupt", "channels", "sessions",
     "..", ".", "", "%00", "%2F", "%2E%2E", "x", "00000000-0000-0000-0000-000000000000"]
)


class AnyPathTests(RestTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD"]), st.lists(SEGMENTS, min_size=1, max_size=5))
    def test_no_path_is_a_server_error(self, method: str, segments: list[str]) -> None:
        """Whatever the method and path, the API never answers 500; its errors are JSON."""
        response = self.request(method, "/" + "/".join(segments))
        self.assertLess(response.status, 500, (method, segments, response.body))
        if response.status >= 400 and method != "HEAD":
            self.assertError(response, response.status)


class MaxKernelsTests(RestTestCase):
    config_changes = {"max_kernels": 1}

    def test_resource_limit(self) -> None:
        """Past --max-kernels, POST /api/kernels is a 403 'Resource Limit', as the reference."""
        self.start()
        body = self.assertError(self.request("POST", "/api/kernels"), 403, "Resource Limit")
        self.assertEqual(body["reason"], "Forbidden")
        self.assertEqual(len(self.launcher.launches), 1)


class ListKernelsTests(RestTestCase):
    def test_list_forbidden_by_default(self) -> None:
        """GET /api/kernels is 403 unless --list-kernels is on, as in the reference."""
        self.assertError(self.request("GET", "/api/kernels"), 403, "Forbidden")


class ListKernelsEnabledTests(RestTestCase):
    config_changes = {"list_kernels": True}

    def test_list(self) -> None:
        """With --list-kernels, GET /api/kernels lists the running kernels' models."""
        self.assertEqual(self.request("GET", "/api/kernels").json(), [])
        first, second = self.start(), self.start({"name": "other"})
        listed = self.request("GET", "/api/kernels").json()
        self.assertEqual(sorted(m["id"] for m in listed), sorted([first["id"], second["id"]]))


class KernelTests(RestTestCase):
    def test_get(self) -> None:
        """GET /api/kernels/{id} is the model; an unknown id is a 404."""
        model = self.start()
        response = self.request("GET", f"/api/kernels/{model['id']}")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["id"], model["id"])
        self.assertEqual(response.json()["execution_state"], "idle")
        self.assertError(self.request("GET", "/api/kernels/00000000-0000-0000-0000-000000000000"), 404)

    def test_delete(self) -> None:
        """DELETE /api/kernels/{id} shuts the kernel down (204); it is then a 404, and so is a second DELETE."""
        model = self.start()
        response = self.request("DELETE", f"/api/kernels/{model['id']}")
        self.assertEqual(response.status, 204)
        self.assertEqual(response.body, b"")
        self.assertEqual(self.launcher.alive(), [])
        self.assertError(self.request("GET", f"/api/kernels/{model['id']}"), 404)
        self.assertError(self.request("DELETE", f"/api/kernels/{model['id']}"), 404)

    def test_interrupt(self) -> None:
        """POST /api/kernels/{id}/interrupt interrupts the kernel and answers 204."""
        model = self.start()
        response = self.request("POST", f"/api/kernels/{model['id']}/interrupt")
        self.assertEqual(response.status, 204)
        self.assertEqual(self.launcher.kernels[0].signals, [2])

    def test_restart(self) -> None:
        """POST /api/kernels/{id}/restart restarts under the same id and answers 200 with the model."""
        model = self.start()
        response = self.request("POST", f"/api/kernels/{model['id']}/restart")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["id"], model["id"])
        self.assertEqual(len(self.launcher.launches), 2)
        self.assertEqual(len(self.launcher.alive()), 1)

    def test_failed_restart(self) -> None:
        """A restart whose kernel never comes back is a 500 saying so; the dead kernel is then a 404 and its process is gone."""
        model = self.start()
        self.launcher.behaviour = {"answers_kernel_info": False}
        response = self.request("POST", f"/api/kernels/{model['id']}/restart", clock_step=10)
        body = self.assertError(response, 500)
        self.assertIn("failed to restart", body["message"])
        self.assertError(self.request("GET", f"/api/kernels/{model['id']}"), 404)
        self.assertEqual(self.launcher.alive(), [])

    def test_unknown_kernel_actions(self) -> None:
        """Restart or interrupt of an unknown kernel is a 404 (the reference answers 500)."""
        for action in ("restart", "interrupt"):
            self.assertError(self.request("POST", f"/api/kernels/nope/{action}"), 404, "Kernel does not exist: nope")

    def test_wrong_method(self) -> None:
        """A method a route does not serve is a 405 with an Allow header listing the ones it does."""
        response = self.request("PUT", "/api/kernels")
        self.assertError(response, 405)
        self.assertEqual(response.header("Allow"), "GET, HEAD, POST")
        response = self.request("GET", "/api/kernels/x/restart")
        self.assertError(response, 405)
        self.assertEqual(response.header("Allow"), "POST")

    def test_unknown_path(self) -> None:
        """An unknown path below the base URL, or one with an empty segment, is a JSON 404; so is anything outside the base URL."""
        self.assertError(self.request("GET", "/api/nothing/here"), 404)
        self.assertError(self.request("GET", "/api//kernelspecs"), 404)
        response = self.request("GET", "/../elsewhere")
        self.assertEqual(response.status, 404)

    def test_unexpected_error_is_opaque(self) -> None:
        """A route that raises answers 500 with a fixed message; the traceback goes to the log only."""

        def broken(self):
            raise RuntimeError("internal detail /secret/path")

        model = self.start()
        self.patch(Kernel, "model", broken)
        response = self.request("GET", f"/api/kernels/{model['id']}")
        self.assertEqual(response.status, 500)
        self.assertEqual(response.json(), {"reason": "Internal Server Error", "message": "Unknown server error"})
        self.assertNotIn(b"secret", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
