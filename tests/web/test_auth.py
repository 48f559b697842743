"""Tests for kgd.web.auth: where a token may come from and how it is compared."""

from __future__ import annotations

import hmac

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kgd.web import auth
from kgd.web.auth import header_token, is_authorized, presented_token

# Tokens as clients send them in a header: printable ASCII without spaces.
TOKENS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1)


class HeaderTokenTests(SynchronousTestCase):
    def test_token_and_bearer_schemes(self) -> None:
        """'token T' (the reference) and 'Bearer T' (Jupyter Server) both carry a token; scheme case does not matter."""
        for header in (b"token abc", b"Token abc", b"Bearer abc", b"bearer   abc  ", b"  TOKEN abc"):
            self.assertEqual(header_token(header), "abc")

    def test_no_token(self) -> None:
        """No header, an empty one, another scheme or a scheme without value carries no token."""
        for header in (None, b"", b"Basic YWxhZGRpbjpvcGVu", b"token", b"token   ", b"abc"):
            self.assertIsNone(header_token(header))


class PresentedTokenTests(SynchronousTestCase):
    def test_query_first(self) -> None:
        """A non-empty ?token= is what the request presents, even with a header (as the reference judges it)."""
        self.assertEqual(presented_token(b"token header", [b"query"]), "query")

    def test_empty_query_does_not_override_header(self) -> None:
        """An empty ?token= counts as absent: the header's token is used."""
        self.assertEqual(presented_token(b"token header", [b""]), "header")
        self.assertEqual(presented_token(b"token header", [b"", b"second"]), "second")

    def test_nothing_presented(self) -> None:
        """Without header or query token, nothing is presented."""
        self.assertIsNone(presented_token(None, []))
        self.assertIsNone(presented_token(None, [b""]))


class IsAuthorizedTests(SynchronousTestCase):
    def test_no_token_configured(self) -> None:
        """With no --auth-token every request is authorized."""
        self.assertTrue(is_authorized("", None, []))
        self.assertTrue(is_authorized("", b"token wrong", [b"wrong"]))

    def test_right_and_wrong_tokens(self) -> None:
        """The right token is accepted from header, Bearer or query; a wrong, missing or prefix token is refused."""
        self.assertTrue(is_authorized("s3cret", b"token s3cret", []))
        self.assertTrue(is_authorized("s3cret", b"Bearer s3cret", []))
        self.assertTrue(is_authorized("s3cret", None, [b"s3cret"]))
        self.assertTrue(is_authorized("s3cret", b"token s3cret", [b""]))
        self.assertFalse(is_authorized("s3cret", b"token s3cre", []))
        self.assertFalse(is_authorized("s3cret", b"token s3cret", [b"wrong"]))
        self.assertFalse(is_authorized("s3cret", None, []))
        self.assertFalse(is_authorized("s3cret", b"Basic s3cret", []))

    def test_non_ascii_token(self) -> None:
        """A non-ASCII token works from the query (UTF-8) and never raises."""
        self.assertTrue(is_authorized("clé", None, ["clé".encode()]))
        self.assertFalse(is_authorized("clé", None, [b"\xff\xfe"]))

    def test_constant_time_compare(self) -> None:
        """Tokens are compared with hmac.compare_digest, not ==."""
        calls = []

        def spy(a, b):
            calls.append((a, b))
            return a == b

        self.patch(hmac, "compare_digest", spy)
        self.assertTrue(is_authorized("s3cret", b"token s3cret", []))
        self.assertEqual(calls, [(b"s3cret", b"s3cret")])
        self.assertIs(auth.hmac, hmac)

    @given(TOKENS, TOKENS, st.booleans())
    def test_only_the_exact_token_passes(self, expected: str, other: str, in_query: bool) -> None:
        """The configured token passes from header or query; any other presented value is refused."""

        def check(value: str) -> bool:
            if in_query:
                return is_authorized(expected, None, [value.encode("utf-8")])
            return is_authorized(expected, b"token " + value.encode("utf-8"), [])

        self.assertTrue(check(expected))
        if other != expected:
            self.assertFalse(check(other))
