"""TLS server settings shared by the SMTP and POP3 listeners."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import ssl

from .api import ConfigurationError
from .config.model import TLSConfig

_VERSIONS = {"tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}


def server_context(tls: TLSConfig) -> ssl.CertificateOptions:
    """CertificateOptions for a listener, with a clear error for a bad file or key.

    The certificate chain and key are loaded with ``cryptography`` and handed to
    pyOpenSSL as such: pyOpenSSL deprecated its own ``X509``/``PKey`` objects for a
    context's certificate (24.3) on the way to removing them."""
    if not tls.certificate or not tls.private_key:
        raise ConfigurationError("tls needs both certificate and privateKey", tls.source)
    try:
        cert_pem = Path(tls.certificate).read_bytes()
        key_pem = Path(tls.private_key).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read TLS file: {exc}", tls.source) from None
    try:
        certs = [x509.load_pem_x509_certificate(block) for block in _pem_blocks(cert_pem)]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except Exception as exc:  # noqa: BLE001 - cryptography raises several error types
        raise ConfigurationError(f"invalid TLS certificate or key: {exc}", tls.source) from None
    if not certs:
        raise ConfigurationError(f"{tls.certificate} holds no PEM certificate", tls.source)
    version = _VERSIONS.get(tls.minimum_version.lower())
    if version is None:
        raise ConfigurationError("minimumVersion must be TLSv1.2 or TLSv1.3", tls.source)
    options = ssl.CertificateOptions(privateKey=key, certificate=certs[0],
                                     extraCertChain=certs[1:], raiseMinimumTo=version)
    try:
        # Twisted builds the OpenSSL context on first use, where a key that does not
        # fit would fail every handshake: build it now, so start and check-config say so.
        options.getContext()
    except Exception as exc:  # noqa: BLE001 - pyOpenSSL raises several error types
        raise ConfigurationError(f"the TLS key does not fit the certificate: {exc}",
                                 tls.source) from None
    return options


def _pem_blocks(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    out = []
    for part in data.split(marker)[:-1]:
        start = part.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            out.append(part[start:] + marker + b"\n")
    return out


def trust_root(ca_file: str | None, source: str | None = None):
    """Twisted's trust root of the PEM certificates in ``ca_file`` (None: the
    system's CAs, as ``optionsForClientTLS`` uses by default)."""
    if not ca_file:
        return None
    try:
        data = Path(ca_file).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"tlsPolicy.caFile: cannot read {ca_file}: "
                                 f"{exc.strerror}", source) from None
    end = b"-----END CERTIFICATE-----"
    blocks = [b + end for b in data.split(end) if b"-----BEGIN CERTIFICATE-----" in b]
    try:
        certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception as exc:  # noqa: BLE001 - OpenSSL's errors name nothing useful
        raise ConfigurationError(f"tlsPolicy.caFile: {ca_file} holds a broken "
                                 f"certificate ({exc})", source) from None
    if not certificates:
        raise ConfigurationError(f"tlsPolicy.caFile: {ca_file} holds no PEM certificate",
                                 source)
    return ssl.trustRootFromCertificates(certificates)
