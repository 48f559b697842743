"""TLS for drop-in use: ``KG_CERTFILE``, ``KG_KEYFILE`` and ``KG_CLIENT_CA``.

``--listen ssl:...`` needs no code of ours.  Operators coming from the
reference gateway set certificate files instead; with ``--certfile`` every
``tcp:`` listener (the one ``--ip``/``--port`` builds included) serves TLS,
and ``--client-ca`` makes it require a client certificate signed by one of
those CAs (Twisted's ``ssl:`` endpoint string cannot express that).  A
``--certfile`` without ``--keyfile`` holds its key too, as the reference
allows.  Unusable files stop the daemon with a usage error naming them.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL.crypto import FILETYPE_PEM
from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.python.usage import UsageError

_UNESCAPED_COLON = re.compile(r"(?<!\\):")


def _read(path: str, setting: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise UsageError(f"--{setting}: cannot read {path}: {error.strerror}") from None


def _certificates(pem: bytes, path: str, setting: str) -> list[ssl.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError:
        found = []
    if not found:
        raise UsageError(f"--{setting}: {path} holds no PEM certificate")
    return [ssl.Certificate.loadPEM(cert.public_bytes(Encoding.PEM)) for cert in found]


def tls_options(certfile: str, keyfile: str = "", client_ca: str = "") -> ssl.CertificateOptions:
    """Server TLS options from PEM files: certificate (with its chain), key, optional client CAs."""
    chain = _certificates(_read(certfile, "certfile"), certfile, "certfile")
    key_path = keyfile or certfile
    try:
        key = ssl.KeyPair.load(_read(key_path, "keyfile" if keyfile else "certfile"), FILETYPE_PEM)
    except Exception:  # pyOpenSSL raises its own Error for anything unparsable
        raise UsageError(f"--{'keyfile' if keyfile else 'certfile'}: {key_path} holds no usable PEM private key") from None
    authorities = _certificates(_read(client_ca, "client-ca"), client_ca, "client-ca") if client_ca else []
    try:
        options = ssl.CertificateOptions(
            privateKey=key.original,
            certificate=chain[0].original,
            extraCertChain=[cert.original for cert in chain[1:]],
            verify=bool(authorities),
            caCerts=[cert.original for cert in authorities] or None,
            requireCertificate=bool(authorities),
        )
        options.getContext()  # checks now that the key matches the certificate
    except Exception as error:
        raise UsageError(f"--certfile: {certfile} and its key cannot be used together: {error}") from None
    return options


def parse_tcp(description: str) -> tuple[int, str, int] | None:
    """Port, interface and backlog of a ``tcp:`` endpoint description; None for other kinds."""
    parts = [re.sub(r"\\(.)", r"\1", part) for part in _UNESCAPED_COLON.split(description)]
    if parts[0] != "tcp":
        return None
    positional = [p for p in parts[1:] if "=" not in p]
    keywords = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    port = keywords.get("port", positional[0] if positional else "")
    return int(port), keywords.get("interface", ""), int(keywords.get("backlog", 50))


def listening_services(
    listen: Sequence[str],
    site: Any,
    reactor: Any,
    *,
    certfile: str = "",
    keyfile: str = "",
    client_ca: str = "",
) -> list[IService]:
    """One listening service per ``--listen`` description, with the certificate files applied to ``tcp:`` ones."""
    if client_ca and not certfile:
        raise UsageError("--client-ca: needs --certfile (and --keyfile) to serve TLS")
    if keyfile and not certfile:
        raise UsageError("--keyfile: needs --certfile")
    options = tls_options(certfile, keyfile, client_ca) if certfile else None
    if options is not None and all(parse_tcp(d) is None for d in listen):
        raise UsageError("--certfile: no tcp: listener to serve TLS on (use --ip/--port, --listen tcp:..., or ssl:)")
    services: list[IService] = []
    for description in listen:
        tcp = parse_tcp(description) if options is not None else None
        if tcp is None:
            services.append(strports.service(description, site, reactor=reactor))
            continue
        port, interface, backlog = tcp
        endpoint = SSL4ServerEndpoint(reactor, port, options, backlog=backlog, interface=interface)
        service = StreamServerEndpointService(endpoint, site)
        service._raiseSynchronously = True  # as strports.service: a busy port stops startup
        services.append(service)
    return services
