"""The real daemon over TLS, with certificates the test generates.

``--listen ssl:...`` (Twisted's endpoint, no code of kgd's), and the
reference's ``KG_CERTFILE``/``KG_KEYFILE``/``KG_CLIENT_CA`` variables, where
a client without a certificate from the CA cannot even finish the handshake.
"""

from __future__ import annotations

import json
import os
from typing import Any

import treq
from twisted.internet import defer, reactor, ssl
from twisted.web.client import Agent, ResponseNeverReceived
from twisted.web.iweb import IPolicyForHTTPS
from twisted.trial import unittest
from zope.interface import implementer

from tests.integration.daemon import Daemon
from tests.web.certs import CertFiles, make_certificates


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@implementer(IPolicyForHTTPS)
class TrustTestCA:
    """Trust only the test CA; present the client certificate if given."""

    def __init__(self, certs: CertFiles, with_client_certificate: bool = False) -> None:
        self.ca = ssl.Certificate.loadPEM(_read(certs.ca))
        self.client = (
            ssl.PrivateCertificate.loadPEM(_read(certs.client_cert) + _read(certs.client_key)) if with_client_certificate else None
        )

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS(hostname.decode(), trustRoot=self.ca, clientCertificate=self.client)


@defer.inlineCallbacks
def get_api(url: str, policy: TrustTestCA) -> Any:
    response = yield treq.get(url + "/api", agent=Agent(reactor, contextFactory=policy), persistent=False)
    body = yield response.content()
    return response.code, json.loads(body)


class TlsTests(unittest.TestCase):
    """HTTPS with the gateway's own certificate, and mutual TLS."""

    timeout = 90

    def setUp(self) -> None:
        self.certs = make_certificates(os.path.abspath(self.mktemp()))

    @defer.inlineCallbacks
    def test_listen_ssl(self) -> None:
        """``--listen ssl:0:...`` serves the API over HTTPS verified against the test CA."""
        listen = f"ssl:0:interface=127.0.0.1:privateKey={self.certs.server_key}:certKey={self.certs.server_cert}"
        daemon = Daemon(listen=listen)
        yield daemon.start()
        self.addCleanup(daemon.stop)
        status, body = yield get_api(f"https://127.0.0.1:{daemon.port}", TrustTestCA(self.certs))
        self.assertEqual(status, 200)
        self.assertIn("version", body)

    @defer.inlineCallbacks
    def test_environment_certificates_and_client_ca(self) -> None:
        """KG_CERTFILE/KG_KEYFILE make the tcp: listener TLS; KG_CLIENT_CA then refuses clients without a CA-signed certificate."""
        daemon = Daemon(
            env={"KG_CERTFILE": self.certs.server_cert, "KG_KEYFILE": self.certs.server_key, "KG_CLIENT_CA": self.certs.ca}
        )
        yield daemon.start()
        self.addCleanup(daemon.stop)
        url = f"https://127.0.0.1:{daemon.port}"
        status, body = yield get_api(url, TrustTestCA(self.certs, with_client_certificate=True))
        self.assertEqual(status, 200)
        yield self.assertFailure(get_api(url, TrustTestCA(self.certs)), ResponseNeverReceived)
        plain = treq.get(f"http://127.0.0.1:{daemon.port}/api", persistent=False)
        yield self.assertFailure(plain, Exception)
