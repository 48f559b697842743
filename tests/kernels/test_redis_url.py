"""Reading ``--kernel-store redis://...``: what the store connects to, and the password kept out of sight."""

from __future__ import annotations

from twisted.trial import unittest

from kgd.kernels.redis_url import BadStoreUrl, parse_redis_url


class ParseRedisUrlTests(unittest.SynchronousTestCase):
    def test_full_url(self) -> None:
        """Host, port, database and password come from the URL; a percent-encoded password is decoded."""
        address = parse_redis_url("redis://:p%40ss@redis.internal:6380/2")
        self.assertEqual((address.host, address.port, address.db, address.tls), ("redis.internal", 6380, 2, False))
        self.assertEqual(address.password, "p@ss")

    def test_defaults(self) -> None:
        """Without port or database, Redis's own defaults apply: 6379 and database 0."""
        address = parse_redis_url("redis://localhost")
        self.assertEqual((address.port, address.db, address.password, address.username), (6379, 0, None, None))

    def test_tls_and_acl_user(self) -> None:
        """``rediss://`` asks for TLS; a user name before the password is kept for Redis 6 ACLs."""
        address = parse_redis_url("rediss://kgd:secret@[::1]:6390/1")
        self.assertEqual((address.host, address.tls, address.username, address.password), ("::1", True, "kgd", "secret"))

    def test_password_from_the_environment(self) -> None:
        """A password passed in (from the environment) is used when the URL has none; the URL's wins otherwise."""
        self.assertEqual(parse_redis_url("redis://h:1/0", password="from-env").password, "from-env")
        self.assertEqual(parse_redis_url("redis://:in-url@h:1/0", password="from-env").password, "in-url")

    def test_credentials_never_shown(self) -> None:
        """str() and repr() of the address name the server but never the user or password."""
        address = parse_redis_url("redis://kgd:hunter2-secret@h:1/3")
        for text in (str(address), repr(address)):
            self.assertNotIn("hunter2-secret", text)
            self.assertNotIn("kgd:", text)
        self.assertEqual(str(address), "redis://h:1/3")

    def test_bad_urls(self) -> None:
        """Other schemes, no host, a non-numeric database or port, or a query are refused, without echoing the password."""
        for url in (
            "http://h:1/0",
            "redis://:hunter2-secret@/0",
            "redis://:hunter2-secret@h:1/zero",
            "redis://:hunter2-secret@h:port/0",
            "redis://:hunter2-secret@h:1/0?ssl=true",
        ):
            with self.assertRaises(BadStoreUrl) as raised:
                parse_redis_url(url)
            self.assertNotIn("hunter2-secret", str(raised.exception))
