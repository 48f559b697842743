"""CORS headers and the Origin check as pure functions of the ``--allow-*`` settings."""

from __future__ import annotations

from twisted.trial import unittest

from kgd.web.cors import CorsSettings, cors_headers, origin_allowed

ALL = CorsSettings(
    allow_origin="https://jupyter.org",
    allow_methods="GET,POST",
    allow_headers="Authorization,Content-Type",
    allow_credentials="false",
    expose_headers="X-My-Fake-Header",
    max_age="600",
)


class CorsHeadersTests(unittest.TestCase):
    """Which Access-Control-* headers a response carries."""

    def test_every_setting_becomes_its_header(self) -> None:
        """Each non-empty setting is sent under its header name, exactly (reference test 7)."""
        self.assertEqual(
            dict(cors_headers(ALL, "https://jupyter.org")),
            {
                "Access-Control-Allow-Origin": "https://jupyter.org",
                "Access-Control-Allow-Methods": "GET,POST",
                "Access-Control-Allow-Headers": "Authorization,Content-Type",
                "Access-Control-Allow-Credentials": "false",
                "Access-Control-Expose-Headers": "X-My-Fake-Header",
                "Access-Control-Max-Age": "600",
            },
        )

    def test_no_empty_allow_origin(self) -> None:
        """Without a setting and without an Origin, no Access-Control-Allow-Origin at all (the reference sends it empty)."""
        self.assertEqual(cors_headers(CorsSettings(), None), [])
        self.assertEqual(cors_headers(CorsSettings(), ""), [])

    def test_origin_echoed_when_unset(self) -> None:
        """With no --allow-origin, an admitted Origin is echoed, with ``Vary: Origin`` for caches."""
        self.assertEqual(
            cors_headers(CorsSettings(), "http://localhost:8888"),
            [("Access-Control-Allow-Origin", "http://localhost:8888"), ("Vary", "Origin")],
        )

    def test_setting_wins_over_origin(self) -> None:
        """A configured origin is sent as is, whatever the request's Origin."""
        headers = dict(cors_headers(CorsSettings(allow_origin="*"), "http://elsewhere"))
        self.assertEqual(headers, {"Access-Control-Allow-Origin": "*"})


class OriginCheckTests(unittest.TestCase):
    """Which Origins may use the API."""

    def test_no_origin_passes(self) -> None:
        """Requests without Origin (curl, servers) are not browsers and pass."""
        self.assertTrue(origin_allowed(CorsSettings(), None, "127.0.0.1:8888"))

    def test_same_host_passes(self) -> None:
        """A page served by the gateway's own host and port passes, in any case."""
        self.assertTrue(origin_allowed(CorsSettings(), "http://LOCALHOST:8888", "localhost:8888"))

    def test_foreign_origin_refused(self) -> None:
        """Another host, or the same host on another port, is refused (reference test 3)."""
        self.assertFalse(origin_allowed(CorsSettings(), "fake.com:8888", "127.0.0.1:8888"))
        self.assertFalse(origin_allowed(CorsSettings(), "http://localhost:9999", "localhost:8888"))
        self.assertFalse(origin_allowed(CorsSettings(), "http://a.example", None))

    def test_allowed_origin_exactly(self) -> None:
        """The configured origin passes; a longer origin that merely starts with it does not."""
        settings = CorsSettings(allow_origin="https://trusted.example.com")
        self.assertTrue(origin_allowed(settings, "https://trusted.example.com", "gw:1"))
        self.assertFalse(origin_allowed(settings, "https://trusted.example.com.evil.com", "gw:1"))

    def test_star_admits_everyone(self) -> None:
        """``--allow-origin '*'`` turns the check off."""
        self.assertTrue(origin_allowed(CorsSettings(allow_origin="*"), "http://anything", "gw:1"))


class OriginPatternTests(unittest.TestCase):
    """``--allow-origin-pat``: a regular expression that must match the whole Origin."""

    settings = CorsSettings(allow_origin_pat=r"https://([a-z]+\.)?trusted\.example\.com")

    def test_full_match_only(self) -> None:
        """Matching origins pass; an origin that merely starts (or ends) with a match does not."""
        for origin in ("https://trusted.example.com", "https://app.trusted.example.com"):
            self.assertTrue(origin_allowed(self.settings, origin, "gw:1"), origin)
        for origin in (
            "https://trusted.example.com.evil.com",
            "https://evil.com/https://trusted.example.com",
            "http://trusted.example.com",
            "https://trusted.example.com:8443",
        ):
            self.assertFalse(origin_allowed(self.settings, origin, "gw:1"), origin)

    def test_matching_origin_echoed(self) -> None:
        """A matching Origin is echoed (with Vary), even when --allow-origin names another one."""
        settings = CorsSettings(allow_origin="https://main.example", allow_origin_pat=self.settings.allow_origin_pat)
        self.assertEqual(
            cors_headers(settings, "https://app.trusted.example.com"),
            [("Access-Control-Allow-Origin", "https://app.trusted.example.com"), ("Vary", "Origin")],
        )
        self.assertEqual(cors_headers(settings, "https://other.example"), [("Access-Control-Allow-Origin", "https://main.example")])
