"""``--kernel-store redis://...`` URLs, parsed without importing a Redis client.

txredisapi installs the global reactor when imported, so the options
(parsed before twistd installs the chosen reactor) check URLs here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 6379


class BadStoreUrl(ValueError):
    """A ``--kernel-store`` URL kgd cannot use; the message never contains the password."""


@dataclass(frozen=True)
class RedisAddress:
    """Where the Redis store is; ``str()`` and ``repr()`` leave the credentials out."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"RedisAddress({self})"


def parse_redis_url(url: str, password: str | None = None) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]`` or ``rediss://``; ``password`` is used when the URL has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadStoreUrl("the Redis URL is malformed (expected redis://[:password@]host:port/db)") from None
    if parts.scheme not in ("redis", "rediss"):
        raise BadStoreUrl(f"a Redis store URL starts with redis:// or rediss://, not {parts.scheme!r}")
    if not parts.hostname:
        raise BadStoreUrl("the Redis URL names no host")
    db_text = parts.path.lstrip("/") or "0"
    if not db_text.isdigit():
        raise BadStoreUrl(f"the Redis database must be a number, not {db_text!r}")
    if parts.query or parts.fragment:
        raise BadStoreUrl("the Redis URL takes no query or fragment")
    return RedisAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        db=int(db_text),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else password,
    )
