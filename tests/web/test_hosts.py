"""The Host check against DNS rebinding: pure rule, then the gateway resource in memory."""

from __future__ import annotations

import json

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from kgd.web.hosts import allowed_names, host_allowed, host_name
from kgd.web.ops import ReadOnlyEndpoint
from kgd.web.json_body import json_response
from kgd.web.resource import GatewayResource, Mount

LOOPBACK_HOSTS = (
    "localhost", "LOCALHOST:8888", "localhost.", "127.0.0.1", "127.0.0.1:8888", "127.8.9.10:1",
    "[::1]", "[::1]:8888", "[::ffff:127.0.0.1]:80",
)  # fmt: skip
FOREIGN_HOSTS = (
    "evil.example", "evil.example:8888", "127.0.0.1.evil.example", "localhost.evil.example",
    "[::2]:8888", "10.0.0.1", "", ":8888", "[localhost]x", "local%68ost",
)  # fmt: skip


class HostRuleTests(SynchronousTestCase):
    """On a loopback address only loopback names and allowed ones pass; elsewhere any name does."""

    def test_loopback_names_pass(self) -> None:
        """localhost, 127.0.0.0/8 and [::1], with any port, are served on 127.0.0.1 and on ::1."""
        for local in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            for host in LOOPBACK_HOSTS:
                self.assertTrue(host_allowed(host, local), (host, local))

    def test_other_names_refused_on_loopback(self) -> None:
        """A rebinding attacker's name, or a name that only starts or ends like a loopback one, is refused."""
        for host in FOREIGN_HOSTS:
            self.assertFalse(host_allowed(host, "127.0.0.1"), host)

    def test_allowed_names(self) -> None:
        """--allow-host names pass on loopback in any case and with any port; a port in the setting is ignored."""
        allowed = allowed_names(["Gw.Example", "proxy.internal:8080", " "])
        self.assertEqual(allowed, frozenset({"gw.example", "proxy.internal"}))
        for host in ("gw.example", "GW.EXAMPLE:8888", "proxy.internal", "proxy.internal:1"):
            self.assertTrue(host_allowed(host, "127.0.0.1", allowed), host)
        self.assertFalse(host_allowed("evil.example", "127.0.0.1", allowed))

    def test_non_loopback_address_takes_any_host(self) -> None:
        """A request that reached a public or LAN address, or a Unix socket, may name any host (Jupyter Server's rule)."""
        for local in ("10.1.2.3", "192.0.2.7", "2001:db8::1", None):
            self.assertTrue(host_allowed("evil.example", local), local)

    def test_missing_host(self) -> None:
        """An HTTP/1.0 request without Host is not a browser's and is served."""
        self.assertTrue(host_allowed(None, "127.0.0.1"))

    def test_host_name(self) -> None:
        """Ports, brackets, case and a trailing dot are not part of the compared name."""
        self.assertEqual(
            [host_name(h) for h in ("A.Example:80", "[::1]:1", "x.", "x:y", "[fe80::1%eth0]")],
            ["a.example", "::1", "x", "x:y", "fe80::1%eth0"],
        )


class GatewayHostTests(SynchronousTestCase):
    """The root resource refuses a foreign Host before anything else, public routes included."""

    def fetch(self, url: str, allowed: tuple[str, ...] = ()) -> tuple[int, dict]:
        healthz = ReadOnlyEndpoint(lambda request: json_response(request, {"status": "ok"}))
        root = GatewayResource("/", [Mount(("healthz",), healthz, lambda segments: True)], allowed_hosts=allowed)
        client = StubTreq(root)  # connections to 127.0.0.1, as on a loopback listener
        response = self.successResultOf(client.get(url))
        return response.code, json.loads(self.successResultOf(client.content(response)))

    def test_foreign_host_refused(self) -> None:
        """``Host: evil.example`` on a loopback listener is a JSON 403 naming the host and --allow-host."""
        status, body = self.fetch("http://evil.example:8888/healthz")
        self.assertEqual(status, 403)
        self.assertEqual(body["reason"], "Forbidden")
        self.assertIn("'evil.example:8888'", body["message"])
        self.assertIn("--allow-host", body["message"])

    def test_loopback_and_allowed_hosts_served(self) -> None:
        """localhost and a name given with --allow-host are served."""
        self.assertEqual(self.fetch("http://localhost:8888/healthz")[0], 200)
        self.assertEqual(self.fetch("http://gw.example/healthz", allowed=("gw.example",))[0], 200)
