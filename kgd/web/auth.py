"""Token authentication, as pure functions over what a request presents.

A request may carry the token in ``Authorization: token T`` (the reference
gateway), ``Authorization: Bearer T`` (Jupyter Server accepts it) or the
``token`` query argument (browsers cannot set headers on WebSockets).  A
non-empty query token is judged first, as the reference does; an empty one
counts as absent, so ``?token=`` never overrides a valid header.  Tokens are
compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Sequence

_SCHEMES = ("token", "bearer")


def authorization_token(authorization: str) -> str | None:
    """The token in an ``Authorization`` header's text (``token T`` or ``Bearer T``), or None."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in _SCHEMES:
        return None
    value = value.strip()
    return value or None


def header_token(authorization: bytes | None) -> str | None:
    """The token in a raw ``Authorization`` header, or None."""
    if not authorization:
        return None
    return authorization_token(authorization.decode("latin-1"))


def same_token(presented: str, expected: str) -> bool:
    """True if *presented* is *expected*, compared in constant time."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def presented_token(authorization: bytes | None, query_tokens: Sequence[bytes]) -> str | None:
    """The token a request presents: the first non-empty query token, else the header's."""
    for raw in query_tokens:
        value = raw.decode("utf-8", "replace")
        if value:
            return value
    return header_token(authorization)


def is_authorized(expected: str, authorization: bytes | None, query_tokens: Sequence[bytes]) -> bool:
    """True if no token is configured, or the request presents the right one."""
    if not expected:
        return True
    presented = presented_token(authorization, query_tokens)
    if presented is None:
        return False
    return same_token(presented, expected)
