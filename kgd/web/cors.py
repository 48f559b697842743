"""CORS headers and the Origin check, as pure functions of the settings.

The headers follow the reference gateway's ``KG_ALLOW_*`` settings, with its
defect fixed: an ``Access-Control-Allow-Origin`` header is sent only when it
has a value.  The Origin check refuses a request whose ``Origin`` is neither
the server's own host nor admitted by ``--allow-origin`` or, matched whole,
``--allow-origin-pat``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class CorsSettings:
    """The ``--allow-*``, ``--expose-headers`` and ``--max-age`` values; empty means unset."""

    allow_origin: str = ""
    allow_origin_pat: str = ""
    allow_methods: str = ""
    allow_headers: str = ""
    allow_credentials: str = ""
    expose_headers: str = ""
    max_age: str = ""


def cors_headers(settings: CorsSettings, origin: str | None) -> list[tuple[str, str]]:
    """The Access-Control-* headers for a response to a request from ``origin``."""
    headers = []
    echo = bool(origin) and (not settings.allow_origin or _matches_pattern(settings, origin))
    allow_origin = origin if echo else settings.allow_origin
    if allow_origin:
        headers.append(("Access-Control-Allow-Origin", allow_origin))
    if echo:
        # The value echoes the request, so caches must key on Origin.
        headers.append(("Vary", "Origin"))
    for name, value in (
        ("Access-Control-Allow-Credentials", settings.allow_credentials),
        ("Access-Control-Allow-Headers", settings.allow_headers),
        ("Access-Control-Allow-Methods", settings.allow_methods),
        ("Access-Control-Expose-Headers", settings.expose_headers),
        ("Access-Control-Max-Age", settings.max_age),
    ):
        if value:
            headers.append((name, value))
    return headers


def origin_allowed(settings: CorsSettings, origin: str | None, host: str | None) -> bool:
    """True if a request from ``origin`` to ``host`` may proceed.

    No Origin (not a browser, or same-origin navigation), the server's own
    host, ``--allow-origin '*'`` and the exact allowed origin pass.
    """
    if not origin:
        return True
    if settings.allow_origin == "*" or origin == settings.allow_origin or _matches_pattern(settings, origin):
        return True
    origin_host = urlsplit(origin).netloc if "://" in origin else origin
    return bool(host) and origin_host.lower() == (host or "").lower()


def _matches_pattern(settings: CorsSettings, origin: str) -> bool:
    """True if ``--allow-origin-pat`` matches the whole Origin (a prefix match would admit ``trusted.com.evil.com``)."""
    return bool(settings.allow_origin_pat) and re.fullmatch(settings.allow_origin_pat, origin) is not None
