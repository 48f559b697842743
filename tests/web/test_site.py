"""Tests for kgd.web.site: the access log never shows a token."""

from __future__ import annotations

from urllib.parse import quote, unquote

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import parse_qs
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from kgd.web.site import GatewayRequest, GatewaySite, redact_uri

SECRET = "SeCrEt"

# Query values as a client might write them, percent-encoded or not; never containing the marker.
VALUES = st.lists(st.sampled_from(["a", "b", "=", "&", "%", "+", ";", "?", "#", "/", "1", "%C3%A9", "%FF", "%20"]), max_size=6).map("".join)
NAMES = st.sampled_from(["token", "tok%65n", "session", "t", "Token", "x"])
# Names a client may have meant as the token: case, "+" and blanks, encodings, prefixes.
NEAR_MISSES = st.builds(
    lambda prefix, core, suffix: prefix + core + suffix,
    st.sampled_from(["", "access_", "X-", "auth", "my%5F"]),
    st.sampled_from(["token", "TOKEN", "Token", "tOkEn", "tok%65n", "TOK%45N", "%74oken", "secret", "password", "api_key", "ApiKey"]),
    st.sampled_from(["", "+", "%20", "_", "s", "[]", "%00"]),
)


def token_values(uri: str) -> list[str]:
    """The ``token`` query values as twisted.web hands them to the auth check."""
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return [v.decode("latin-1") for v in parse_qs(query.encode("latin-1"), 1).get(b"token", [])]


@st.composite
def uris(draw) -> str:
    path = draw(st.sampled_from(["/api/kernels/abc/channels", "/", "/api", "/a%20b"]))
    pairs = []
    for _ in range(draw(st.integers(0, 4))):
        pairs.append(f"{draw(NAMES)}={draw(VALUES)}")
    secret = SECRET + draw(st.text(alphabet="xyz0-_.~", max_size=6))
    value = draw(st.sampled_from([secret, quote(secret, safe=""), secret.replace("r", "%72")]))
    pairs.insert(draw(st.integers(0, len(pairs))), f"{draw(st.sampled_from(['token', 'tok%65n']))}={value}")
    return f"{path}?{'&'.join(pairs)}"


class RedactUriTests(SynchronousTestCase):
    def test_token_replaced(self) -> None:
        """The token value becomes [secret]; the path and other arguments stay readable."""
        self.assertEqual(
            redact_uri(b"/api/kernels/k/channels?session_id=s1&token=abc123"),
            "/api/kernels/k/channels?session_id=s1&token=[secret]",
        )

    def test_separators_as_twisted_reads_them(self) -> None:
        """A token after ';' or after a '#' in the query is redacted: twisted.web accepts both as a token."""
        self.assertEqual(redact_uri(b"/api?session_id=1;token=abc"), "/api?session_id=1;token=[secret]")
        self.assertEqual(redact_uri(b"/api?x=#&token=abc"), "/api?x=#&token=[secret]")
        self.assertEqual(redact_uri(b"/api?tok%65n=abc&to+ken=x"), "/api?tok%65n=[secret]&to+ken=x")

    def test_without_token_unchanged(self) -> None:
        """A URI without a secret-looking query argument is logged exactly as received."""
        for uri in (b"/api/kernels", b"/api?x=1&y=%20", b"/a?session_id=1&kernel=t"):
            self.assertEqual(redact_uri(uri), uri.decode())

    @given(NEAR_MISSES, st.text(alphabet="abcdef0123456789", min_size=8, max_size=16))
    def test_near_miss_names_redacted(self, name: str, value: str) -> None:
        """A value under a name that looks like a token (TOKEN, token+, access_token, ...) is never logged."""
        redacted = redact_uri(f"/api/kernels?x=1&{name}={value}&y=2".encode("latin-1"))
        self.assertNotIn(value, redacted)
        self.assertNotIn(value, unquote(redacted))
        self.assertTrue(redacted.startswith("/api/kernels?x=1&"), redacted)
        self.assertTrue(redacted.endswith("&y=2"), redacted)

    def test_configured_token_hidden_anywhere(self) -> None:
        """The configured token is hidden wherever it appears in the URI: path, odd names, encoded."""
        token = "abc123secret"
        for uri in (
            b"/api/kernels/abc123secret",
            b"/api?x=abc123secret",
            b"/api?abc123secret",
            b"/api/%61bc123secret",
            b"/api?q=abc123%73ecret",
            b"/api?q=abc123secre%74+1",
        ):
            redacted = redact_uri(uri, token)
            self.assertNotIn(token, redacted, uri)
            self.assertNotIn(token, unquote(redacted), uri)
            self.assertIn("[secret]", redacted, uri)

    @given(uris())
    def test_token_never_survives(self, uri: str) -> None:
        """Whatever else the URI holds, no token value the server would accept appears in the redacted form."""
        redacted = redact_uri(uri.encode("latin-1"))
        self.assertNotIn(SECRET, redacted)
        self.assertNotIn(SECRET, unquote(redacted))
        self.assertTrue(all(value == "[secret]" for value in token_values(redacted)))
        self.assertEqual(redacted.split("?")[0], uri.split("?")[0])


class AccessLogTests(SynchronousTestCase):
    def test_access_log_event(self) -> None:
        """Each finished request is one structured event with method, redacted path and status; no header values."""
        site = GatewaySite(Resource())
        request = GatewayRequest(DummyChannel(), False)
        request.method = b"GET"
        request.uri = b"/api/kernels?token=abc123"
        request.path = b"/api/kernels"
        request.requestHeaders.addRawHeader(b"authorization", b"token hdr-secret-123")
        request.setResponseCode(401)
        with capturedLogs() as events:
            site.log(request)
        (event,) = [e for e in events if e.get("event") == "http_request"]
        self.assertEqual((event["method"], event["path"], event["status"]), ("GET", "/api/kernels?token=[secret]", 401))
        self.assertGreaterEqual(event["duration_ms"], 0)
        flattened = repr(event)
        self.assertNotIn("abc123", flattened)
        self.assertNotIn("hdr-secret-123", flattened)

    def test_duration_from_the_site_clock(self) -> None:
        """The logged duration is the time on the site's clock between the request's arrival and its log line."""
        clock = Clock()
        clock.advance(1000)
        site = GatewaySite(Resource(), clock=clock)
        channel = DummyChannel()
        channel.site = site
        request = GatewayRequest(channel, False)
        request.method, request.uri = b"GET", b"/api"
        clock.advance(0.25)
        with capturedLogs() as events:
            site.log(request)
        (event,) = [e for e in events if e.get("event") == "http_request"]
        self.assertEqual(event["duration_ms"], 250.0)

    def test_configured_token_never_logged(self) -> None:
        """The configured token is hidden in the method and path of a logged request, however sent."""
        site = GatewaySite(Resource(), clock=Clock(), auth_token="tok-9f8e7d")
        request = GatewayRequest(DummyChannel(), False)
        request.method = b"tok-9f8e7d"
        request.uri = b"/api/kernels?Auth=1&q=tok-9f8e7d&TOKEN=tok-9f8e7d"
        with capturedLogs() as events:
            site.log(request)
        (event,) = [e for e in events if e.get("event") == "http_request"]
        self.assertNotIn("tok-9f8e7d", repr(event))

    def test_no_tracebacks_shown(self) -> None:
        """The site never renders tracebacks to clients."""
        self.assertFalse(GatewaySite(Resource()).displayTracebacks)


class RouteTests(SynchronousTestCase):
    """The access log's ``route`` names the route template, never a concrete id."""

    def log_of(self, path: bytes, method: bytes = b"GET") -> dict:
        from klein import Klein

        app = Klein()

        @app.route("/api/kernels/<kernel_id>", methods=["GET"])
        def kernel(request: object, kernel_id: str) -> bytes:
            return b"{}"

        site = GatewaySite(app.resource())
        channel = DummyChannel()
        channel.site = site
        request = GatewayRequest(channel, False)
        request.method = method
        request.uri = request.path = path
        request.prepath, request.postpath = [], path.split(b"/")[1:]
        request.site = site
        request.sitepath = []
        request.process()
        with capturedLogs() as events:
            site.log(request)
        (event,) = [e for e in events if e.get("event") == "http_request"]
        return event

    def test_klein_rule(self) -> None:
        """A Klein route logs its rule, so every kernel id falls under one label."""
        event = self.log_of(b"/api/kernels/3f1c2a9e-0000-4000-8000-000000000000")
        self.assertEqual((event["status"], event["route"]), (200, "/api/kernels/<kernel_id>"))

    def test_unmatched(self) -> None:
        """A path no route matches, or a method no route allows, is ``other``."""
        self.assertEqual(self.log_of(b"/nowhere/at/all")["route"], "other")
        self.assertEqual(self.log_of(b"/api/kernels/k", method=b"POST")["route"], "other")
