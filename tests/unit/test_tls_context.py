"""The listeners' TLS context: loaded with ``cryptography``, checked when loaded."""

from __future__ import annotations

import warnings

import pytest
from cryptography import x509
from OpenSSL import SSL

from mailet_mta.api import ConfigurationError
from mailet_mta.config.model import TLSConfig
from mailet_mta.tls import server_context
from tests.support.certs import make_cert


def test_loading_a_certificate_and_key_warns_of_nothing(tmp_path):
    """pyOpenSSL deprecated its own X509/PKey objects for a context's certificate: the
    context is given cryptography's, so loading it raises no DeprecationWarning."""
    cert, key = make_cert(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ctx = server_context(TLSConfig(certificate=str(cert), private_key=str(key)))
    assert isinstance(ctx.getContext(), SSL.Context)


def test_a_key_that_does_not_fit_the_certificate_is_refused_when_loaded(tmp_path):
    """Twisted builds the OpenSSL context lazily: without the check at load, a wrong key
    passed start and check-config and failed every handshake."""
    cert, _key = make_cert(tmp_path / "a")
    _cert, other_key = make_cert(tmp_path / "b")
    with pytest.raises(ConfigurationError, match="does not fit the certificate"):
        server_context(TLSConfig(certificate=str(cert), private_key=str(other_key)))


def test_a_certificate_and_key_in_one_file_and_a_chain_are_accepted(tmp_path):
    leaf, leaf_key = make_cert(tmp_path / "leaf", "mail.example")
    inter, _ = make_cert(tmp_path / "inter", "intermediate.example")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.read_bytes() + inter.read_bytes())
    both = tmp_path / "both.pem"
    both.write_bytes(leaf.read_bytes() + leaf_key.read_bytes())
    server_context(TLSConfig(certificate=str(both), private_key=str(both)))
    ctx = server_context(TLSConfig(certificate=str(chain), private_key=str(leaf_key)))
    conn = SSL.Connection(ctx.getContext(), None)
    assert conn.get_certificate() is not None
    served = conn.get_certificate().to_cryptography()
    assert served.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == \
        "mail.example"


@pytest.mark.parametrize("content", [b"not a pem\n", b""])
def test_a_broken_key_file_is_a_clear_error(tmp_path, content):
    cert, _key = make_cert(tmp_path)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    with pytest.raises(ConfigurationError, match="invalid TLS certificate or key"):
        server_context(TLSConfig(certificate=str(cert), private_key=str(bad)))
