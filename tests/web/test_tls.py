"""TLS options from certificate files, and which listeners serve TLS."""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.testing import MemoryReactor
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from kgd.web.tls import listening_services, parse_tcp, tls_options
from tests.web.certs import make_certificates


class TlsOptionsTests(SynchronousTestCase):
    """``tls_options`` reads PEM files into server TLS options."""

    def setUp(self) -> None:
        self.certs = make_certificates(self.mktemp())

    def test_server_only(self) -> None:
        """Certificate and key give options that do not ask for a client certificate."""
        options = tls_options(self.certs.server_cert, self.certs.server_key)
        self.assertFalse(options.verify)
        self.assertFalse(options.requireCertificate)
        self.assertIsNotNone(options.getContext())

    def test_key_in_certfile(self) -> None:
        """Without a keyfile, the key is read from the certificate file."""
        combined = self.mktemp()
        with open(combined, "wb") as f:
            for path in (self.certs.server_cert, self.certs.server_key):
                with open(path, "rb") as part:
                    f.write(part.read())
        self.assertIsNotNone(tls_options(combined).getContext())

    def test_client_ca_requires_certificates(self) -> None:
        """A client CA makes the options verify and require client certificates."""
        options = tls_options(self.certs.server_cert, self.certs.server_key, self.certs.ca)
        self.assertTrue(options.verify)
        self.assertTrue(options.requireCertificate)

    def test_bad_files(self) -> None:
        """Missing or wrong files are usage errors naming the setting and the file."""
        for args, fragment in [
            (("/nonexistent.pem", self.certs.server_key), "--certfile: cannot read /nonexistent.pem"),
            ((self.certs.server_key, self.certs.server_key), "holds no PEM certificate"),
            ((self.certs.server_cert, self.certs.server_cert), "--keyfile: "),
            ((self.certs.server_cert, self.certs.client_key), "cannot be used together"),
            ((self.certs.server_cert, self.certs.server_key, "/nope.pem"), "--client-ca: cannot read /nope.pem"),
        ]:
            error = self.assertRaises(UsageError, tls_options, *args)
            self.assertIn(fragment, str(error))


class ListenerTests(SynchronousTestCase):
    """With certificate files, tcp: listeners serve TLS; others are left as described."""

    def setUp(self) -> None:
        self.certs = make_certificates(self.mktemp())

    def test_parse_tcp(self) -> None:
        """Port, interface (escaped IPv6 too) and backlog are read; other kinds are None."""
        self.assertEqual(parse_tcp("tcp:8888:interface=127.0.0.1"), (8888, "127.0.0.1", 50))
        self.assertEqual(parse_tcp("tcp:port=1:interface=\\:\\:1:backlog=5"), (1, "::1", 5))
        self.assertIsNone(parse_tcp("unix:/tmp/s"))
        self.assertIsNone(parse_tcp("ssl:443"))

    def test_tcp_becomes_tls(self) -> None:
        """``--certfile`` turns tcp: listeners into TLS listeners on the same port and interface."""
        services = listening_services(
            ["tcp:0:interface=127.0.0.1", "unix:/tmp/kgd-test.sock"],
            object(),
            MemoryReactor(),
            certfile=self.certs.server_cert,
            keyfile=self.certs.server_key,
        )
        tls = services[0]
        self.assertIsInstance(tls, StreamServerEndpointService)
        self.assertIsInstance(tls.endpoint, SSL4ServerEndpoint)
        self.assertEqual((tls.endpoint._port, tls.endpoint._interface), (0, "127.0.0.1"))
        self.assertNotIsInstance(services[1].endpoint, SSL4ServerEndpoint)

    def test_plain_without_certificates(self) -> None:
        """Without certificate files nothing changes."""
        services = listening_services(["tcp:0"], object(), MemoryReactor())
        self.assertNotIsInstance(services[0].endpoint, SSL4ServerEndpoint)

    def test_inconsistent_settings(self) -> None:
        """A client CA or key without a certificate, or certificates with no tcp: listener, are usage errors."""
        for changes, fragment in [
            ({"client_ca": self.certs.ca}, "--client-ca: needs --certfile"),
            ({"keyfile": self.certs.server_key}, "--keyfile: needs --certfile"),
            ({"certfile": self.certs.server_cert, "keyfile": self.certs.server_key, "listen": ["unix:/tmp/x"]}, "no tcp: listener"),
        ]:
            listen = changes.pop("listen", ["tcp:0"])
            error = self.assertRaises(UsageError, listening_services, listen, object(), MemoryReactor(), **changes)
            self.assertIn(fragment, str(error))
