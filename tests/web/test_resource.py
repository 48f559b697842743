"""The gateway's root resource in memory: base URL, CORS on every response, preflight, Origin check, auth.

A tiny Klein app stands in for a personality, so these tests see exactly what
``GatewayResource`` adds in front of any personality's routes.
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.trial import unittest

from kgd.options import parse_base_url
from kgd.web.cors import CorsSettings
from kgd.web.errors import HTTPError
from kgd.web.json_body import json_response
from kgd.web.resource import GatewayResource, Mount
from kgd.web.error_handlers import install_error_handlers

TOKEN = "s3cret"


class TinyApp:
    """A personality with one good route, one failing route and one public route."""

    app = Klein()
    install_error_handlers(app)

    def __init__(self, name: str) -> None:
        self.name = name

    @app.route("/api/thing", methods=["GET", "POST"])
    def thing(self, request: Any) -> bytes:
        return json_response(request, {"app": self.name, "path": request.path.decode()})

    @app.route("/api/fail")
    def fail(self, request: Any) -> bytes:
        raise HTTPError(400, "bad thing")

    @app.route("/public")
    def public(self, request: Any) -> bytes:
        return json_response(request, {"public": True})


def make_client(base_url: str = "/", cors: CorsSettings = CorsSettings(), token: str = TOKEN) -> StubTreq:
    mounts = [
        Mount((), TinyApp("first").app.resource(), lambda segments: tuple(segments) == ("public",)),
        Mount(("second",), TinyApp("second").app.resource(), lambda segments: False),
    ]
    resource = GatewayResource(parse_base_url(base_url), mounts, auth_token=token, cors=cors, allowed_hosts=["gw.example"])
    return StubTreq(resource)


AUTH = {b"Authorization": [f"token {TOKEN}".encode()]}
HOST = "http://gw.example:8888"


class Case(unittest.TestCase):
    def fetch(self, client: StubTreq, method: str, path: str, headers: dict | None = None) -> tuple[int, Any, Any]:
        response = self.successResultOf(client.request(method, HOST + path, headers=headers or {}))
        body = self.successResultOf(response.content())
        return response.code, response.headers, json.loads(body) if body else None


class BaseUrlTests(Case):
    """Every route lives below ``--base-url``, given with or without a trailing slash."""

    def test_routes_below_base_url(self) -> None:
        """``/gw`` and ``/gw/`` serve the same routes; the personality sees the full path."""
        for base in ("/gw", "/gw/", "gw"):
            client = make_client(base)
            status, _, body = self.fetch(client, "GET", "/gw/api/thing", AUTH)
            self.assertEqual((status, body), (200, {"app": "first", "path": "/gw/api/thing"}), base)

    def test_outside_base_url_is_404(self) -> None:
        """A route outside the base URL is a JSON 404, and so is the bare route without the prefix."""
        client = make_client("/gw/")
        for path in ("/api/thing", "/gwx/api/thing", "/"):
            status, _, body = self.fetch(client, "GET", path, AUTH)
            self.assertEqual((status, body), (404, {"reason": "Not Found", "message": ""}), path)

    def test_second_personality_below_its_name(self) -> None:
        """A second personality is mounted at base URL + its name and does not shadow the first."""
        client = make_client("/gw")
        self.assertEqual(self.fetch(client, "GET", "/gw/second/api/thing", AUTH)[2]["app"], "second")
        self.assertEqual(self.fetch(client, "GET", "/gw/api/thing", AUTH)[2]["app"], "first")

    def test_deep_base_url(self) -> None:
        """A base URL of several segments works (reference test 24: ``/fake/path``)."""
        client = make_client("/fake/path")
        self.assertEqual(self.fetch(client, "GET", "/fake/path/api/thing", AUTH)[0], 200)
        self.assertEqual(self.fetch(client, "GET", "/fake/api/thing", AUTH)[0], 404)


class AuthTests(Case):
    """The token guards every route except public ones and preflights."""

    def test_token_required(self) -> None:
        """Without the token a route answers a JSON 401; with it (header or query) it answers."""
        client = make_client()
        status, _, body = self.fetch(client, "GET", "/api/thing")
        self.assertEqual((status, body), (401, {"reason": "Unauthorized", "message": ""}))
        self.assertEqual(self.fetch(client, "GET", "/api/thing", AUTH)[0], 200)
        self.assertEqual(self.fetch(client, "GET", f"/api/thing?token={TOKEN}")[0], 200)
        self.assertEqual(self.fetch(client, "GET", "/api/thing", {b"Authorization": [b"token wrong"]})[0], 401)

    def test_public_route(self) -> None:
        """A route the personality declares public needs no token."""
        self.assertEqual(self.fetch(make_client(), "GET", "/public")[0], 200)

    def test_preflight_needs_no_token(self) -> None:
        """OPTIONS answers 200 with an empty body and the CORS headers without a token (the reference answers 403)."""
        cors = CorsSettings(allow_origin="https://app.example", allow_methods="GET,POST,OPTIONS", allow_headers="X-XSRFToken")
        status, headers, body = self.fetch(
            make_client(cors=cors),
            "OPTIONS",
            "/api/thing",
            {b"Origin": [b"https://app.example"], b"Access-Control-Request-Method": [b"POST"]},
        )
        self.assertEqual((status, body), (200, None))
        self.assertEqual(headers.getRawHeaders(b"Access-Control-Allow-Methods"), [b"GET,POST,OPTIONS"])
        self.assertEqual(headers.getRawHeaders(b"Access-Control-Allow-Headers"), [b"X-XSRFToken"])
        self.assertEqual(headers.getRawHeaders(b"Access-Control-Allow-Origin"), [b"https://app.example"])


class CorsTests(Case):
    """Access-Control-* headers on every response, errors included; foreign Origins refused."""

    cors = CorsSettings(
        allow_origin="https://jupyter.org",
        allow_methods="GET,POST",
        allow_headers="Authorization,Content-Type",
        allow_credentials="false",
        expose_headers="X-My-Fake-Header",
        max_age="600",
    )
    expected = {
        b"Access-Control-Allow-Origin": [b"https://jupyter.org"],
        b"Access-Control-Allow-Methods": [b"GET,POST"],
        b"Access-Control-Allow-Headers": [b"Authorization,Content-Type"],
        b"Access-Control-Allow-Credentials": [b"false"],
        b"Access-Control-Expose-Headers": [b"X-My-Fake-Header"],
        b"Access-Control-Max-Age": [b"600"],
    }

    def assertCors(self, headers: Any, context: str) -> None:
        for name, value in self.expected.items():
            self.assertEqual(headers.getRawHeaders(name), value, f"{context}: {name!r}")

    def test_headers_on_every_response(self) -> None:
        """Success, 400, 401, 404 (inside and outside the base URL) and 405 all carry the CORS headers."""
        client = make_client("/gw", cors=self.cors)
        origin = {b"Origin": [b"https://jupyter.org"]}
        for method, path, headers, status in [
            ("GET", "/gw/api/thing", {**AUTH, **origin}, 200),
            ("GET", "/gw/api/fail", {**AUTH, **origin}, 400),
            ("GET", "/gw/api/thing", origin, 401),
            ("GET", "/gw/nothing", {**AUTH, **origin}, 404),
            ("GET", "/elsewhere", origin, 404),
            ("DELETE", "/gw/api/thing", {**AUTH, **origin}, 405),
        ]:
            code, response_headers, _ = self.fetch(client, method, path, headers)
            self.assertEqual(code, status, path)
            self.assertCors(response_headers, f"{method} {path}")
        self.assertNotIn(b"Content-Security-Policy", dict(response_headers.getAllRawHeaders()))

    def test_no_empty_allow_origin(self) -> None:
        """With no --allow-origin and no Origin, no Access-Control-Allow-Origin header is sent at all."""
        _, headers, _ = self.fetch(make_client(), "GET", "/api/thing", AUTH)
        self.assertIsNone(headers.getRawHeaders(b"Access-Control-Allow-Origin"))

    def test_same_origin_echoed(self) -> None:
        """A page from the gateway's own origin gets its Origin echoed back."""
        _, headers, _ = self.fetch(make_client(), "GET", "/api/thing", {**AUTH, b"Origin": [HOST.encode()]})
        self.assertEqual(headers.getRawHeaders(b"Access-Control-Allow-Origin"), [HOST.encode()])

    def test_foreign_origin_refused(self) -> None:
        """A foreign Origin gets 404 on HTTP (as the reference) and 403 on a WebSocket upgrade, never its Origin echoed."""
        client = make_client()
        foreign = {**AUTH, b"Origin": [b"fake.com:8888"]}
        status, headers, body = self.fetch(client, "GET", "/api/thing", foreign)
        self.assertEqual((status, body), (404, {"reason": "Not Found", "message": ""}))
        self.assertIsNone(headers.getRawHeaders(b"Access-Control-Allow-Origin"))
        status, _, body = self.fetch(client, "OPTIONS", "/api/thing", {b"Origin": [b"http://evil.example"]})
        self.assertEqual(status, 404)
        upgrade = {**foreign, b"Upgrade": [b"websocket"], b"Connection": [b"Upgrade"]}
        status, _, body = self.fetch(client, "GET", "/api/thing", upgrade)
        self.assertEqual((status, body["message"]), (403, "Cross origin websockets not allowed"))

    def test_origin_that_extends_the_allowed_one_refused(self) -> None:
        """``https://trusted.example.com.evil.com`` does not pass as ``https://trusted.example.com``."""
        client = make_client(cors=CorsSettings(allow_origin="https://trusted.example.com"))
        good = self.fetch(client, "GET", "/api/thing", {**AUTH, b"Origin": [b"https://trusted.example.com"]})
        bad = self.fetch(client, "GET", "/api/thing", {**AUTH, b"Origin": [b"https://trusted.example.com.evil.com"]})
        self.assertEqual((good[0], bad[0]), (200, 404))

    def test_star_admits_any_origin(self) -> None:
        """With ``--allow-origin '*'`` any Origin may call the API (reference test 3)."""
        client = make_client(cors=CorsSettings(allow_origin="*"))
        status, headers, _ = self.fetch(client, "GET", "/api/thing", {**AUTH, b"Origin": [b"fake.com:8888"]})
        self.assertEqual(status, 200)
        self.assertEqual(headers.getRawHeaders(b"Access-Control-Allow-Origin"), [b"*"])
