"""The gateway's root resource: Host check, base URL, Origin check, CORS, preflight and token auth.

Every request passes here before any personality sees it, so these policies
hold on every route alike, the channels WebSocket included.  The resource is
a leaf: it consumes the base URL and the personality's mount prefix into
``request.prepath`` and hands the request to that personality's resource
(a Klein app), which routes on the rest.

The path is percent-decoded here, once: split on ``/`` first, then each
segment decoded, so ``%2F`` stays inside its segment.  The public-path check,
the token check and every router read that one value: the routers through
``request.postpath`` (each segment in ``routing_form``) or, for notebook-http's
endpoint matching, through ``route_segments(request)``.  Deciding "public"
on one reading of the path and routing on another is how ``/%70ublic/info``
once ran a token-protected cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from kgd.web import auth
from kgd.web.cors import CorsSettings, cors_headers, origin_allowed
from kgd.web.errors import HTTPError, write_error
from kgd.web.hosts import allowed_names, host_allowed

log = Logger()


@dataclass(frozen=True)
class Mount:
    """A personality's resource served below ``prefix`` (segments under the base URL)."""

    prefix: tuple[str, ...]
    resource: IResource
    is_public: Callable[[Sequence[str]], bool]


def path_segments(path: bytes) -> tuple[str, ...]:
    """The segments of a raw request path (no query), each percent-decoded once as UTF-8.

    A trailing slash gives a trailing empty segment.  Raises
    ``UnicodeDecodeError`` if a decoded segment is not UTF-8.
    """
    raw = path[1:] if path.startswith(b"/") else path
    return tuple(unquote_to_bytes(segment).decode("utf-8") for segment in raw.split(b"/"))


def routing_form(segment: str) -> bytes:
    """A decoded segment as routers read it in ``request.postpath``: UTF-8 with its own ``%`` and ``/`` escaped.

    Klein joins ``postpath`` with ``/`` and matches the result, so a decoded
    ``/`` left bare would split one segment into two; escaped, the segments
    the router sees are exactly the ones the token check saw.
    """
    return segment.replace("%", "%25").replace("/", "%2F").encode("utf-8")


def route_segments(request: IRequest) -> tuple[str, ...]:
    """The decoded segments below the personality's mount, exactly as the gateway checked them."""
    return getattr(request, "route_segments", ())


class GatewayResource(Resource):
    """Applies the gateway's HTTP policies, then dispatches to a mounted personality."""

    isLeaf = True

    def __init__(
        self,
        base_url: str,
        mounts: Sequence[Mount],
        *,
        auth_token: str = "",
        cors: CorsSettings = CorsSettings(),
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self._allowed_hosts = allowed_names(allowed_hosts)
        self._base = tuple(s for s in base_url.split("/") if s)
        # Longest prefix first, so a personality mounted below another wins.
        self._mounts = sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
        self._auth_token = auth_token
        self._cors = cors

    def render(self, request: IRequest) -> Any:
        host = _header(request, b"host")
        if not host_allowed(host, getattr(request.getHost(), "host", None), self._allowed_hosts):
            return write_error(
                request,
                HTTPError(403, f"Host {host!r} is not a loopback name; to serve it on loopback, add it with --allow-host"),
            )
        origin = _header(request, b"origin")
        admitted = origin_allowed(self._cors, origin, host)
        # A refused Origin is never echoed back, so a browser cannot read the refusal either.
        for name, value in cors_headers(self._cors, origin if admitted else None):
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        try:
            segments = path_segments(request.path)
        except UnicodeDecodeError:
            return write_error(request, HTTPError(400, "The request path is not UTF-8 once percent-decoded"))
        if tuple(segments[: len(self._base)]) != self._base:
            return write_error(request, HTTPError(404))
        below_base = segments[len(self._base) :]
        mount = self._mount_for(below_base)
        if mount is None:
            return write_error(request, HTTPError(404))
        if not admitted:
            if (_header(request, b"upgrade") or "").lower() == "websocket":
                return write_error(request, HTTPError(403, "Cross origin websockets not allowed"))
            return write_error(request, HTTPError(404))
        if request.method == b"OPTIONS":
            request.setResponseCode(200)
            return b""
        if getattr(request, "body_too_large", False):
            return write_error(request, HTTPError(413, "The request body is larger than the gateway accepts"))
        route = below_base[len(mount.prefix) :]
        if not mount.is_public(route) and not auth.is_authorized(
            self._auth_token,
            request.getHeader(b"authorization"),
            (request.args or {}).get(b"token", []),
        ):
            return write_error(request, HTTPError(401))
        consumed = len(self._base) + len(mount.prefix)
        request.prepath = [routing_form(s) for s in segments[:consumed]]
        request.postpath = [routing_form(s) for s in segments[consumed:]]
        request.route_segments = route
        return mount.resource.render(request)

    def _mount_for(self, segments: tuple[str, ...]) -> Mount | None:
        for mount in self._mounts:
            if tuple(segments[: len(mount.prefix)]) == mount.prefix:
                return mount
        return None


def _header(request: IRequest, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None
