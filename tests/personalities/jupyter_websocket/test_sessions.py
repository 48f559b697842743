"""The sessions API: the pure ``SessionStore``, and the routes in memory over fake kernels.

Routes run through ``StubTreq`` over the kernels REST app; kernels are
``tests.kernels.fakes`` kernels driven by a Clock, so a whole start or
shutdown happens inside ``clock.advance``.  Replicas are those of
``tests.kernels.test_replication``, sharing the in-memory kernel store and a
``RedisSessionTable`` over ``FakeRedisHashes``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from kgd.gateway import Gateway
from kgd.kernels.kernels import Kernels
from kgd.kernels.redis_sessions import RedisSessionTable
from kgd.kernels.session_table import NotebookSession, SessionStore, UnknownSession
from kgd.options import default_config
from kgd.personalities.jupyter_websocket.personality import JupyterWebsocketPersonality
from kgd.personalities.jupyter_websocket.rest import KernelsAPI
from kgd.personalities.jupyter_websocket.sessions import session_model
from kgd.service import personality_settings
from tests.kernels.fake_redis_hash import FakeRedisHashes
from tests.kernels.fakes import fake_machine
from tests.kernels.test_replication import Replica, ReplicationTestCase


def counter_ids() -> Any:
    numbers = itertools.count(1)
    return lambda: f"s{next(numbers)}"


class SessionStoreTests(SynchronousTestCase):
    """The session table, alone."""

    def setUp(self) -> None:
        self.store = SessionStore(new_id=counter_ids())

    def test_create_get_list(self) -> None:
        """Created sessions are found by id and by path, and listed oldest first."""
        a = self.store.create("a.ipynb", "a", "notebook", "k1")
        b = self.store.create("b.py", "", "console", "k2")
        self.assertEqual(a, NotebookSession("s1", "a.ipynb", "a", "notebook", "k1"))
        self.assertIs(self.store.get("s2"), b)
        self.assertIs(self.store.find_by_path("b.py"), b)
        self.assertIsNone(self.store.find_by_path("c"))
        self.assertEqual(self.store.list(), [a, b])

    def test_unknown_id(self) -> None:
        """Getting, updating or deleting an unknown id raises UnknownSession naming it."""
        for call in (lambda: self.store.get("x"), lambda: self.store.update("x", path="p"), lambda: self.store.delete("x")):
            error = self.assertRaises(UnknownSession, call)
            self.assertEqual(str(error), "Session not found: x")

    def test_update(self) -> None:
        """Path, name, type and kernel can change; other fields are a TypeError."""
        self.store.create("a", "a", "notebook", "k1")
        updated = self.store.update("s1", path="b", kernel_id="k2")
        self.assertEqual(updated, NotebookSession("s1", "b", "a", "notebook", "k2"))
        self.assertEqual(self.store.get("s1"), updated)
        self.assertRaises(TypeError, self.store.update, "s1", session_id="s9")

    def test_delete(self) -> None:
        """A deleted session is gone."""
        self.store.create("a", "a", "notebook", "k1")
        self.store.delete("s1")
        self.assertRaises(UnknownSession, self.store.get, "s1")
        self.assertEqual(self.store.list(), [])

    def test_forget_kernels_and_kernel_use(self) -> None:
        """Sessions bound to gone kernels are dropped; kernel use is tracked."""
        self.store.create("a", "", "notebook", "k1")
        self.store.create("b", "", "notebook", "k2")
        self.store.create("c", "", "notebook", "k1")
        self.assertTrue(self.store.uses_kernel("k1"))
        dropped = self.store.forget_kernels(["k1", "k9"])
        self.assertEqual([s.session_id for s in dropped], ["s1", "s3"])
        self.assertEqual([s.session_id for s in self.store.list()], ["s2"])
        self.assertFalse(self.store.uses_kernel("k1"))

    def test_model(self) -> None:
        """The model has Jupyter Server's fields and the reference's legacy ``notebook``."""
        model = session_model(NotebookSession("s1", "a.ipynb", "a", "notebook", "k1"), {"id": "k1"})
        self.assertEqual(
            model,
            {
                "id": "s1",
                "path": "a.ipynb",
                "name": "a",
                "type": "notebook",
                "kernel": {"id": "k1"},
                "notebook": {"path": "a.ipynb", "name": "a"},
            },
        )


class SessionRoutesTests(SynchronousTestCase):
    """``/api/sessions`` routes over real ``Kernels`` with fake kernel processes."""

    def setUp(self) -> None:
        machine = fake_machine(self.mktemp())
        self.clock, self.sockets, self.launcher, self.specs = machine.clock, machine.sockets, machine.launcher, machine.specs

    def make(self, **config: Any) -> StubTreq:
        config.setdefault("list_kernels", True)
        self.config = default_config(**config)
        self.kernels = Kernels(
            self.specs, self.launcher, self.sockets, self.clock, max_kernels=self.config.max_kernels, daemon_env={}
        )
        self.kernels.startService()
        self.addCleanup(self._stop)
        gateway = Gateway(self.kernels, self.specs, self.clock, base_url=self.config.base_url)
        personality = JupyterWebsocketPersonality()
        self.client = StubTreq(KernelsAPI(personality_settings(personality, self.config), gateway).app.resource())
        return self.client

    def _stop(self) -> None:
        d = self.kernels.stopService()
        self.clock.advance(10)
        self.successResultOf(d)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        d = self.client.request(method, "http://gw" + path, data=data)
        for _ in range(5):
            self.clock.advance(1)
            self.client.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, response.headers, json.loads(content) if content else None

    def create(self, body: Any) -> dict[str, Any]:
        status, _, model = self.call("POST", "/api/sessions", body)
        self.assertEqual(status, 201, model)
        return model

    def test_lifecycle(self) -> None:
        """POST starts a kernel (201 + Location), GET lists and fetches it, DELETE shuts its kernel down (204)."""
        self.make()
        self.assertEqual(self.call("GET", "/api/sessions")[::2], (200, []))
        status, headers, model = self.call(
            "POST", "/api/sessions", {"path": "work/a.ipynb", "type": "notebook", "name": "a", "kernel": {"name": "other"}}
        )
        self.assertEqual(status, 201)
        sid, kid = model["id"], model["kernel"]["id"]
        self.assertEqual(headers.getRawHeaders(b"Location"), [f"/api/sessions/{sid}".encode()])
        self.assertEqual(
            (model["path"], model["name"], model["type"], model["notebook"]), ("work/a.ipynb", "a", "notebook", {"path": "work/a.ipynb", "name": "a"})
        )
        self.assertEqual((model["kernel"]["name"], model["kernel"]["execution_state"]), ("other", "idle"))
        self.assertEqual(self.kernels.get(kid).spec_name, "other")
        status, _, listed = self.call("GET", "/api/sessions")
        self.assertEqual((status, [s["id"] for s in listed]), (200, [sid]))
        status, _, fetched = self.call("GET", f"/api/sessions/{sid}")
        self.assertEqual((status, fetched["id"], fetched["kernel"]["id"]), (200, sid, kid))
        status, _, body = self.call("DELETE", f"/api/sessions/{sid}")
        self.assertEqual((status, body), (204, None))
        self.assertEqual(self.kernels.list(), [])
        self.assertEqual(self.launcher.alive(), [])
        status, _, body = self.call("GET", f"/api/sessions/{sid}")
        self.assertEqual((status, body["message"]), (404, f"Session not found: {sid}"))
        self.assertEqual(self.call("DELETE", f"/api/sessions/{sid}")[0], 404)

    def test_legacy_body(self) -> None:
        """The reference's body ``{"notebook": {"path"}, "kernel": {...}}`` means type notebook; a client ``id`` is ignored."""
        self.make()
        model = self.create({"id": "any", "notebook": {"path": "anywhere"}, "kernel": {"name": "python3"}})
        self.assertNotEqual(model["id"], "any")
        self.assertEqual((model["path"], model["type"], model["notebook"]["path"]), ("anywhere", "notebook", "anywhere"))

    def test_listing_gated(self) -> None:
        """Without --list-kernels, listing sessions is 403 as in the reference; single sessions stay reachable."""
        self.make(list_kernels=False)
        status, _, body = self.call("GET", "/api/sessions")
        self.assertEqual((status, body), (403, {"reason": "Forbidden", "message": "Forbidden"}))
        model = self.create({"path": "a", "type": "notebook"})
        self.assertEqual(self.call("GET", f"/api/sessions/{model['id']}")[0], 200)

    def test_methods_and_paths_of_the_mounted_app(self) -> None:
        """Below the kernels app, the sessions app answers JSON 405s with Allow and 404s for paths it does not serve."""
        self.make()
        status, headers, body = self.call("PUT", "/api/sessions")
        self.assertEqual((status, headers.getRawHeaders("allow"), body["reason"]), (405, ["GET, HEAD, POST"], "Method Not Allowed"))
        status, headers, _ = self.call("PUT", "/api/sessions/some-id")
        self.assertEqual((status, headers.getRawHeaders("allow")), (405, ["DELETE, GET, HEAD, PATCH"]))
        self.assertEqual(self.call("GET", "/api/sessions/some-id/deeper")[0], 404)
        self.assertEqual(self.call("GET", "/api/sessions/")[0], 404)

    def test_bad_bodies(self) -> None:
        """Missing body, path or type, bad JSON and wrong types are 400s naming the problem; nothing starts."""
        self.make()
        for body, message in [
            (None, "No JSON data provided"),
            ({"type": "notebook"}, "Missing field in JSON data: path"),
            ({"path": "a"}, "Missing field in JSON data: type"),
            (b"{not json", "Invalid JSON in body of request"),
            ({"path": 3, "type": "notebook"}, "path: 3 is not of type 'string'"),
            ({"path": "a", "type": "notebook", "kernel": "python3"}, "kernel: 'python3' is not of type 'object'"),
            ({"path": "a", "type": "notebook", "kernel": None}, "kernel: None is not of type 'object'"),
            ({"path": "a", "type": "notebook", "kernel": {"name": 3}}, "kernel/name: 3 is not of type 'string', 'null'"),
            ({"path": "", "type": "notebook"}, "path: '' should be non-empty"),
        ]:
            status, _, error = self.call("POST", "/api/sessions", body)
            self.assertEqual((status, error["message"]), (400, message), body)
        self.assertEqual(self.launcher.launches, [])

    def test_unknown_kernelspec(self) -> None:
        """An unknown kernel name is 501 with Jupyter Server's message."""
        self.make()
        status, _, error = self.call("POST", "/api/sessions", {"path": "a", "type": "notebook", "kernel": {"name": "nope"}})
        self.assertEqual(status, 501)
        self.assertIn("The 'nope' kernel is not available", error["message"])

    def test_existing_path_returns_that_session(self) -> None:
        """POSTing a path that has a session returns it with no new kernel (the reference answers 500)."""
        self.make()
        first = self.create({"path": "a", "type": "notebook"})
        second = self.create({"path": "a", "type": "notebook"})
        self.assertEqual(second["id"], first["id"])
        self.assertEqual(len(self.launcher.launches), 1)

    def test_existing_kernel_id(self) -> None:
        """``kernel.id`` of a running kernel binds the session to it without starting another (the reference ignores it)."""
        self.make()
        status, _, kernel = self.call("POST", "/api/kernels", {})
        model = self.create({"path": "a", "type": "notebook", "kernel": {"id": kernel["id"]}})
        self.assertEqual(model["kernel"]["id"], kernel["id"])
        self.assertEqual(len(self.launcher.launches), 1)

    def test_max_kernels(self) -> None:
        """POST respects --max-kernels with 403 Resource Limit (the reference bypasses it)."""
        self.make(max_kernels=1)
        self.create({"path": "a", "type": "notebook"})
        status, _, error = self.call("POST", "/api/sessions", {"path": "b", "type": "notebook"})
        self.assertEqual((status, error["message"]), (403, "Resource Limit"))
        self.assertEqual(len(self.launcher.launches), 1)

    def test_patch_fields_and_kernel(self) -> None:
        """PATCH renames, and changing the kernel by name or id rebinds the session and shuts the old kernel down."""
        self.make()
        model = self.create({"path": "a", "type": "notebook", "name": "a"})
        sid, first_kernel = model["id"], model["kernel"]["id"]
        status, _, patched = self.call("PATCH", f"/api/sessions/{sid}", {"path": "b", "name": "b"})
        self.assertEqual((status, patched["path"], patched["name"], patched["kernel"]["id"]), (200, "b", "b", first_kernel))

        status, _, patched = self.call("PATCH", f"/api/sessions/{sid}", {"kernel": {"name": "other"}})
        second_kernel = patched["kernel"]["id"]
        self.assertEqual((status, patched["kernel"]["name"]), (200, "other"))
        self.assertNotEqual(second_kernel, first_kernel)
        self.assertEqual([k.kernel_id for k in self.kernels.list()], [second_kernel])

        status, _, third = self.call("POST", "/api/kernels", {})
        status, _, patched = self.call("PATCH", f"/api/sessions/{sid}", {"kernel": {"id": third["id"]}})
        self.assertEqual((status, patched["kernel"]["id"]), (200, third["id"]))
        self.assertEqual([k.kernel_id for k in self.kernels.list()], [third["id"]])

    def test_patch_errors(self) -> None:
        """PATCH of an unknown session is 404, to an unknown kernel id 400, with no body 400."""
        self.make()
        self.assertEqual(self.call("PATCH", "/api/sessions/nope", {"path": "x"})[0], 404)
        sid = self.create({"path": "a", "type": "notebook"})["id"]
        status, _, error = self.call("PATCH", f"/api/sessions/{sid}", {"kernel": {"id": "1-2-3-4-5"}})
        self.assertEqual((status, error["message"]), (400, "No such kernel: 1-2-3-4-5"))
        self.assertEqual(self.call("PATCH", f"/api/sessions/{sid}", None)[0], 400)

    def test_shared_kernel_kept_until_last_session(self) -> None:
        """Two sessions on one kernel: deleting the first keeps the kernel, deleting the second shuts it down."""
        self.make()
        first = self.create({"path": "a", "type": "notebook"})
        kid = first["kernel"]["id"]
        second = self.create({"path": "b", "type": "notebook", "kernel": {"id": kid}})
        self.assertEqual(self.call("DELETE", f"/api/sessions/{first['id']}")[0], 204)
        self.assertEqual([k.kernel_id for k in self.kernels.list()], [kid])
        self.assertEqual(self.call("DELETE", f"/api/sessions/{second['id']}")[0], 204)
        self.assertEqual(self.kernels.list(), [])

    def test_session_dropped_when_kernel_gone(self) -> None:
        """Deleting a session's kernel through /api/kernels drops the session from the list and from GET."""
        self.make()
        model = self.create({"path": "a", "type": "notebook"})
        self.assertEqual(self.call("DELETE", f"/api/kernels/{model['kernel']['id']}")[0], 204)
        self.assertEqual(self.call("GET", "/api/sessions")[2], [])
        self.assertEqual(self.call("GET", f"/api/sessions/{model['id']}")[0], 404)


class ReplicatedSessionRoutesTests(ReplicationTestCase):
    """Two replicas' ``/api/sessions`` over one kernel store and one Redis session table (in memory, on a Clock)."""

    def setUp(self) -> None:
        super().setUp()
        self.redis = FakeRedisHashes()
        self.replicas = [Replica(self, "a"), Replica(self, "b")]
        settings = personality_settings(JupyterWebsocketPersonality(), default_config(list_kernels=True))
        self.clients = [
            StubTreq(
                KernelsAPI(
                    settings,
                    Gateway(replica.kernels, self.specs, self.clock, session_table=RedisSessionTable(self.redis.call, "kgd:sessions", self.clock)),
                ).app.resource()
            )
            for replica in self.replicas
        ]

    def call(self, replica: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        client = self.clients[replica]
        d = client.request(method, "http://gw" + path, data=None if body is None else json.dumps(body).encode())
        for _ in range(10):
            self.settle()
            client.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def test_a_session_is_served_by_every_replica(self) -> None:
        """Made through A: B gets, lists, renames and re-posts it (same session, no second kernel); DELETE through B
        ends the kernel A supervises, and A answers 404 after."""
        status, model = self.call(0, "POST", "/api/sessions", {"path": "a.ipynb", "type": "notebook", "name": "a"})
        self.assertEqual(status, 201, model)
        sid, kid = model["id"], model["kernel"]["id"]
        status, fetched = self.call(1, "GET", f"/api/sessions/{sid}")
        self.assertEqual((status, fetched["kernel"]["id"], fetched["kernel"]["execution_state"]), (200, kid, "idle"))
        self.assertTrue(self.replicas[1].kernels.get(kid).mirrored)
        self.assertEqual([s["id"] for s in self.call(1, "GET", "/api/sessions")[1]], [sid])
        status, patched = self.call(1, "PATCH", f"/api/sessions/{sid}", {"name": "renamed"})
        self.assertEqual((status, patched["name"]), (200, "renamed"))
        self.assertEqual(self.call(0, "GET", f"/api/sessions/{sid}")[1]["name"], "renamed")
        status, again = self.call(1, "POST", "/api/sessions", {"path": "a.ipynb", "type": "notebook"})
        self.assertEqual((status, again["id"]), (201, sid))
        self.assertEqual(len(self.launcher.launches), 1)

        self.assertEqual(self.call(1, "DELETE", f"/api/sessions/{sid}")[0], 204)
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(self.call(0, "GET", f"/api/sessions/{sid}")[0], 404)
        self.assertEqual(self.redis.hashes["kgd:sessions"], {})

    def test_a_session_whose_kernel_was_deleted_through_another_replica_is_dropped(self) -> None:
        """A kernel deleted through A's /api/kernels takes its session with it on B too."""
        _, model = self.call(0, "POST", "/api/sessions", {"path": "a", "type": "notebook"})
        self.assertEqual(self.call(1, "GET", f"/api/sessions/{model['id']}")[0], 200)
        self.assertEqual(self.call(0, "DELETE", f"/api/kernels/{model['kernel']['id']}")[0], 204)
        self.assertEqual(self.call(1, "GET", "/api/sessions"), (200, []))
        self.assertEqual(self.call(1, "GET", f"/api/sessions/{model['id']}")[0], 404)

    def test_redis_down_is_503_with_the_reason(self) -> None:
        """A session table out of reach answers 503 naming the store, never a 500."""
        self.redis.unavailable = True
        for method, path, body in [
            ("GET", "/api/sessions", None),
            ("GET", "/api/sessions/some-id", None),
            ("POST", "/api/sessions", {"path": "a", "type": "notebook"}),
            ("DELETE", "/api/sessions/some-id", None),
        ]:
            status, error = self.call(1, method, path, body)
            self.assertEqual(status, 503, (method, path, error))
            self.assertIn("Redis store at redis://fake unavailable", error["message"])
