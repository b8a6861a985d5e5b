"""The listener base shared by SMTP and POP3: the same names, and ``reconfigure``
applying limits, timeouts and the certificate of a reloaded configuration to new
connections (real sockets on 127.0.0.1, real TLS)."""

from __future__ import annotations

import dataclasses
import socket
import ssl

import pytest
import pytest_twisted
from twisted.internet import threads

from mailet_mta.api import ConfigurationError
from mailet_mta.config.model import POP3ServerConfig, TLSConfig
from mailet_mta.pop3 import make_pop3_service
from mailet_mta.smtp.server import make_smtp_service
from tests.support.certs import make_cert
from tests.support.smtp_backend import RecordingBackend, smtp_config
from tests.unit.pop3_memory_backend import MemoryBackend

LOOPBACK = "tcp:0:interface=127.0.0.1"


def pop3_config(**overrides) -> POP3ServerConfig:
    return POP3ServerConfig(**{"listen": LOOPBACK, "connection_timeout": 30, **overrides})


def tls_config(directory) -> TLSConfig:
    cert, key = make_cert(directory)
    return TLSConfig(certificate=str(cert), private_key=str(key))


def served_certificate(port: int) -> bytes:
    """The DER certificate a TLS listener on ``port`` presents (blocking; in a thread)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        return s.recv(512)


@pytest_twisted.ensureDeferred
async def test_smtp_and_pop3_listeners_name_their_ports_alike(tmp_path):
    services = [make_smtp_service(smtp_config(), RecordingBackend(tmp_path / "blobs")),
                make_pop3_service(pop3_config(), MemoryBackend())]
    try:
        for svc in services:
            svc.startService()
            port = await svc.listening
            assert port is svc.listening_port
            assert isinstance(svc.port, int) and svc.port == port.getHost().port > 0
            assert svc.factory.sessions == set() and svc.factory.limits.total == 0
    finally:
        for svc in services:
            await svc.stopService()
    assert all(svc.listening_port is None for svc in services)


@pytest_twisted.ensureDeferred
async def test_reconfigure_gives_new_implicit_tls_connections_the_new_certificate(tmp_path):
    old_tls = tls_config(tmp_path / "old")
    svc = make_pop3_service(pop3_config(implicit_tls=True, tls=old_tls), MemoryBackend())
    svc.startService()
    await svc.listening
    try:
        before = await threads.deferToThread(served_certificate, svc.port)
        new = dataclasses.replace(svc.config, tls=tls_config(tmp_path / "new"))
        svc.reconfigure(new)
        after = await threads.deferToThread(served_certificate, svc.port)
        assert before != after
        assert after == ssl.PEM_cert_to_DER_cert(
            (tmp_path / "new" / "cert.pem").read_text())
        assert svc.config is new and svc.factory.config is new
        assert svc.factory.tls_context is None          # implicit TLS: no STLS
    finally:
        await svc.stopService()


@pytest_twisted.ensureDeferred
async def test_reconfigure_applies_a_new_connection_limit_to_the_next_connection(tmp_path):
    svc = make_pop3_service(pop3_config(), MemoryBackend())
    svc.startService()
    await svc.listening
    try:
        svc.reconfigure(dataclasses.replace(svc.config, connection_limit=1))

        def two_connections():
            with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as first:
                first.settimeout(10)
                return first.recv(512), greeting(svc.port)
        admitted, refused = await threads.deferToThread(two_connections)
        assert admitted.startswith(b"+OK")
        assert refused.startswith(b"-ERR [SYS/TEMP] too many connections")
    finally:
        await svc.stopService()


@pytest_twisted.ensureDeferred
async def test_smtp_reconfigure_applies_policy_name_and_timeout(tmp_path):
    svc = make_smtp_service(smtp_config(), RecordingBackend(tmp_path / "blobs"))
    new = smtp_config(authorized_addresses=["10.0.0.0/8"], helo_name="mx.example.net",
                      connection_timeout=12.0)
    svc.reconfigure(new)
    factory = svc.factory
    assert factory.policy.is_authorized_network("10.1.2.3")
    assert not factory.policy.is_authorized_network("192.0.2.1")
    assert factory.server_name == "mx.example.net"
    assert factory.config.connection_timeout == 12.0


def test_a_certificate_that_does_not_load_changes_nothing(tmp_path):
    svc = make_pop3_service(pop3_config(), MemoryBackend())
    config = svc.config
    broken = dataclasses.replace(config, tls=TLSConfig(
        certificate=str(tmp_path / "missing.pem"), private_key=str(tmp_path / "x.key")))
    with pytest.raises(ConfigurationError, match="cannot read TLS file"):
        svc.reconfigure(broken)
    assert svc.config is config and svc.tls_context is None


def test_implicit_tls_without_a_certificate_is_refused_at_reconfigure():
    svc = make_pop3_service(pop3_config(), MemoryBackend())
    with pytest.raises(ConfigurationError, match="pop3server pop3: implicitTLS needs"):
        svc.reconfigure(dataclasses.replace(svc.config, implicit_tls=True))
