"""The operator's routes in memory: probes without a token, metrics and status behind it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial import unittest

from kgd.gateway import Gateway
from kgd.kernels.specs import KernelSpecs
from kgd.options import default_config
from kgd.options import GatewaySettings
from kgd.service import build_site

TOKEN = "s3cret"
AUTH = {b"Authorization": [b"token " + TOKEN.encode()]}
STARTED = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FakeKernels:
    """Just what the operator's routes read of ``Kernels``."""

    force_name = ""

    def __init__(self) -> None:
        self.kernels: list[Any] = []

    def list(self) -> list[Any]:
        return self.kernels


class OpsRoutesTests(unittest.TestCase):
    """/healthz, /readyz, /metrics and /api/status next to the jupyter-websocket personality."""

    def setUp(self) -> None:
        self.kernels = FakeKernels()
        self.build(default_config(auth_token=TOKEN))

    def build(self, config: GatewaySettings, specs: KernelSpecs | None = None, clock: Clock | None = None) -> None:
        self.gateway = Gateway(self.kernels, specs or KernelSpecs(), clock or Clock(), base_url=config.base_url)  # type: ignore[arg-type]
        self.gateway.metrics.watch_kernels(self.kernels.list)
        self.treq = StubTreq(build_site(config, self.gateway).resource)

    def get(self, path: str, headers: Any = None, method: str = "GET") -> tuple[int, Any, bytes]:
        response = self.successResultOf(self.treq.request(method, "http://127.0.0.1" + path, headers=headers))
        body = self.successResultOf(response.content())
        return response.code, response.headers, body

    def test_healthz_needs_no_token(self) -> None:
        """A liveness probe gets 200 without the token."""
        status, _, body = self.get("/healthz")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))

    def test_readyz_until_ready(self) -> None:
        """readyz answers 503 naming what is missing until every condition holds, then 200; no token needed."""
        self.gateway.readiness.expect("listening")
        self.gateway.readiness.expect("prespawn")
        self.gateway.readiness.done("listening")
        status, _, body = self.get("/readyz")
        self.assertEqual(status, 503)
        self.assertEqual(
            json.loads(body), {"ready": False, "checks": {"listening": True, "prespawn": False, "kernelspecs": True}}
        )
        self.gateway.readiness.done("prespawn")
        status, _, body = self.get("/readyz")
        self.assertEqual((status, json.loads(body)["ready"]), (200, True))

    def test_readyz_without_loadable_kernelspec(self) -> None:
        """A default kernelspec that cannot be loaded keeps readyz at 503."""
        self.build(default_config(auth_token=TOKEN), KernelSpecs("no-such-kernel"))
        status, _, body = self.get("/readyz")
        self.assertEqual(status, 503)
        self.assertFalse(json.loads(body)["checks"]["kernelspecs"])

    def test_metrics_behind_the_token(self) -> None:
        """/metrics is a 401 without the token and Prometheus text with it."""
        status, _, _ = self.get("/metrics")
        self.assertEqual(status, 401)
        self.kernels.kernels.append(SimpleNamespace(spec_name="python3", connections=1, last_activity=STARTED))
        status, headers, body = self.get("/metrics", AUTH)
        self.assertEqual(status, 200)
        self.assertTrue(headers.getRawHeaders("content-type")[0].startswith("text/plain; version="))
        self.assertIn(b'kgd_kernels_running{kernelspec="python3"} 1.0', body)

    def test_metrics_public(self) -> None:
        """With --metrics-public, /metrics needs no token; the API still does."""
        self.build(default_config(auth_token=TOKEN, metrics_public=True))
        self.assertEqual(self.get("/metrics")[0], 200)
        self.assertEqual(self.get("/api/kernelspecs")[0], 401)

    def test_status_model(self) -> None:
        """/api/status has Jupyter Server's fields: started, last_activity, kernels, connections."""
        self.assertEqual(self.get("/api/status")[0], 401)
        later = datetime.now(timezone.utc) + timedelta(days=1)
        self.kernels.kernels += [
            SimpleNamespace(spec_name="python3", connections=2, last_activity=later),
            SimpleNamespace(spec_name="python3", connections=1, last_activity=STARTED),
        ]
        status, _, body = self.get("/api/status", AUTH)
        self.assertEqual(status, 200)
        model = json.loads(body)
        self.assertEqual(set(model), {"started", "last_activity", "kernels", "connections"})
        self.assertEqual((model["kernels"], model["connections"]), (2, 3))
        self.assertEqual(model["last_activity"], later.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        self.assertLess(model["started"], model["last_activity"])

    def test_started_is_the_clocks(self) -> None:
        """/api/status's started is the injected clock's time when the daemon was built, not the wall clock's."""
        clock = Clock()
        clock.advance(STARTED.timestamp())
        self.build(default_config(auth_token=TOKEN), clock=clock)
        clock.advance(3600)
        model = json.loads(self.get("/api/status", AUTH)[2])
        self.assertEqual(model["started"], "2026-01-01T00:00:00.000000Z")
        self.assertEqual(model["last_activity"], model["started"])

    def test_below_base_url(self) -> None:
        """With a base URL, the operator's routes live below it like every other route."""
        self.build(default_config(auth_token=TOKEN, base_url="/kg/"))
        self.assertEqual(self.get("/kg/healthz")[0], 200)
        self.assertEqual(self.get("/healthz")[0], 404)

    def test_methods_and_subpaths(self) -> None:
        """Only GET and HEAD: other methods are a JSON 405 with Allow; paths below a probe are 404."""
        status, headers, body = self.get("/healthz", method="POST")
        self.assertEqual(status, 405)
        self.assertEqual(headers.getRawHeaders("allow"), ["GET, HEAD"])
        self.assertEqual(json.loads(body)["reason"], "Method Not Allowed")
        self.assertEqual(self.get("/healthz", method="HEAD")[0], 200)
        self.assertEqual(self.get("/healthz/deeper")[0], 404)

    def test_personality_routes_unaffected(self) -> None:
        """The personality at the base URL still answers its own /api routes."""
        status, _, body = self.get("/api", AUTH)
        self.assertEqual(status, 200)
        self.assertIn("version", json.loads(body))
