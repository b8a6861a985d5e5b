"""DANE (RFC 7672) against real servers on 127.0.0.1: a DNS zone that serves TLSA
records (with the AD bit of a validating resolver, or without) and a scripted SMTP
peer with STARTTLS as ``mx.a.test``. A matching DANE-EE or DANE-TA record delivers
over TLS; a mismatch, a missing STARTTLS or a failed TLSA lookup defers, never in
clear; records without AD, or no records, change nothing; unusable records only ask
for encryption."""

from __future__ import annotations

import hashlib

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailet_mta.config.model import TLSConfig
from mailet_mta.delivery import tls_reports
from mailet_mta.delivery.dane import MAX_TLSA_RECORDS
from mailet_mta.tls import server_context
from tests.support.certs import make_cert
from tests.support.delivery_harness import DeliveryHarness, listen, make_message
from tests.support.dns_zone import ZoneServer
from tests.support.scripted_smtp import ScriptedSMTPFactory

RETRY_LATER = {"delays": [3600.0], "maxRetries": 3}


def certificate(directory, hostname="mx.a.test"):
    cert_path, key_path = make_cert(directory, hostname)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    context = server_context(TLSConfig(certificate=str(cert_path), private_key=str(key_path)))
    return cert, context


def spki_sha256(cert) -> bytes:
    return hashlib.sha256(cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()


def cert_sha256(cert) -> bytes:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


@pytest.fixture
def world(tmp_path):
    zone = ZoneServer({"mx.a.test": [("A", "127.0.0.1")]}).start()
    zone.authentic = True
    opened = []

    class World:
        pass

    w = World()
    w.zone, w.tmp_path = zone, tmp_path
    w.cert, w.context = certificate(tmp_path / "mx")

    def peer(context="default", **kw):
        factory = ScriptedSMTPFactory(
            tls_context=w.context if context == "default" else context,
            capabilities=["PIPELINING"], **kw)
        opened.append(listen(factory))
        factory.port = int(factory.address.split(":")[1])
        return factory

    def tlsa(factory, *records):
        for record in records:
            zone.add(f"_{factory.port}._tcp.mx.a.test", "TLSA", record)

    def harness(factory):
        h = DeliveryHarness(tmp_path, {"a.test": [f"mx.a.test:{factory.port}"]},
                            dns_servers=[zone.address])
        h.service.dane = True
        h.service.tls_reports = tls_reports.TLSReports(h.db, h.service.clock,
                                                       h.service.track_write)
        return h

    w.peer, w.tlsa, w.harness = peer, tlsa, harness
    yield w
    for port in opened:
        port.stopListening()
    zone.stop()


async def delivered(h, factory):
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@a.test"], make_message())
        await h.until(lambda: factory.messages, what="the delivery")
        return factory.messages[0]
    finally:
        await h.stop()


async def deferred(h, factory):
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@a.test"], make_message(),
                        options=RETRY_LATER)
        [entry] = await h.until(lambda: h.rows().addCallback(
            lambda r: r if r and r[0].attempts >= 1 and r[0].owner is None else None),
            what="the first attempt to be recorded")
        assert entry.recipients[0]["status"] == "pending"
        assert factory.messages == []
        assert not any(c.startswith(("MAIL", "RCPT", "DATA")) for c in factory.all_commands())
        return entry
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("selector, digest", [(1, spki_sha256), (0, cert_sha256)],
                         ids=["3-1-1", "3-0-1"])
async def test_dane_ee_record_matching_the_certificate_delivers_over_tls(
        world, selector, digest):
    factory = world.peer()
    world.tlsa(factory, (3, selector, 1, digest(world.cert)))
    h = world.harness(factory)
    assert (await delivered(h, factory)).tls


@pytest_twisted.ensureDeferred
async def test_dane_ee_record_not_matching_defers_and_never_sends_in_clear(world):
    other, _context = certificate(world.tmp_path / "other")
    factory = world.peer()
    world.tlsa(factory, (3, 1, 1, spki_sha256(other)))
    entry = await deferred(world.harness(factory), factory)
    assert "DANE" in entry.last_error and "TLSA" in entry.last_error
    assert factory.connections == 1                 # no second try in clear


@pytest_twisted.ensureDeferred
async def test_dane_ta_record_needs_the_chain_and_the_mx_name(world):
    factory = world.peer()
    world.tlsa(factory, (2, 0, 1, cert_sha256(world.cert)))    # self-signed: its own TA
    assert (await delivered(world.harness(factory), factory)).tls


@pytest_twisted.ensureDeferred
async def test_dane_ta_certificate_for_another_name_defers(world):
    cert, context = certificate(world.tmp_path / "wrong", "other.test")
    factory = world.peer(context)
    world.tlsa(factory, (2, 0, 1, cert_sha256(cert)))
    await deferred(world.harness(factory), factory)


@pytest_twisted.ensureDeferred
async def test_usable_tlsa_and_no_starttls_defers(world):
    factory = world.peer(context=None)
    world.tlsa(factory, (3, 1, 1, spki_sha256(world.cert)))
    entry = await deferred(world.harness(factory), factory)
    assert "STARTTLS" in entry.last_error


@pytest_twisted.ensureDeferred
async def test_tlsa_without_the_ad_bit_is_ignored(world):
    world.zone.authentic = False
    other, _context = certificate(world.tmp_path / "other")
    factory = world.peer()
    world.tlsa(factory, (3, 1, 1, spki_sha256(other)))         # would not match
    await delivered(world.harness(factory), factory)


@pytest_twisted.ensureDeferred
async def test_only_unusable_records_require_encryption_but_not_authentication(world):
    other, _context = certificate(world.tmp_path / "other")
    factory = world.peer()
    world.tlsa(factory, (1, 1, 1, spki_sha256(other)))         # PKIX-EE: unusable for SMTP
    assert (await delivered(world.harness(factory), factory)).tls
    plain = world.peer(context=None)
    world.tlsa(plain, (1, 1, 1, spki_sha256(other)))
    await deferred(world.harness(plain), plain)


@pytest_twisted.ensureDeferred
async def test_failed_tlsa_lookup_leaves_the_host_unused(world):
    factory = world.peer()
    world.zone.servfail.add(f"_{factory.port}._tcp.mx.a.test")
    entry = await deferred(world.harness(factory), factory)
    assert "TLSA" in entry.last_error
    assert factory.connections == 0


@pytest_twisted.ensureDeferred
async def test_only_the_first_tlsa_records_up_to_the_limit_are_read(world):
    other, _context = certificate(world.tmp_path / "other")
    factory = world.peer()
    world.tlsa(factory, *[(3, 1, 1, spki_sha256(other))] * MAX_TLSA_RECORDS,
               (3, 1, 1, spki_sha256(world.cert)))
    entry = await deferred(world.harness(factory), factory)
    assert "matches none of its TLSA records" in entry.last_error, entry.last_error


@pytest_twisted.ensureDeferred
async def test_dane_applies_only_to_mx_records_the_resolver_vouches_for(world):
    from twisted.internet import reactor

    from mailet_mta.config.model import DNSConfig
    from mailet_mta.delivery.dane import secure_mx
    from mailet_mta.delivery.resolver import Resolver

    world.zone.add("a.test", "MX", (10, "mx.a.test"))
    resolver = Resolver(DNSConfig(servers=[world.zone.address], timeout=1))
    assert await secure_mx(reactor, resolver, "a.test")
    world.zone.authentic = False
    assert not await secure_mx(reactor, resolver, "a.test")
    unreachable = Resolver(DNSConfig(servers=["127.0.0.1:9"], timeout=0.5))
    assert not await secure_mx(reactor, unreachable, "a.test")
