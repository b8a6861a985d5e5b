"""MTA-STS against real servers on 127.0.0.1: the DNS zone publishes
``_mta-sts.a.test``, an HTTPS server with a test CA serves the policy for
``mta-sts.a.test`` (reached through the resolver's ``dns.hosts`` table), and a scripted
SMTP peer with STARTTLS plays ``mx.a.test``. ``enforce`` delivers over verified TLS to
a listed MX and defers otherwise; ``testing`` only reports; the policy is cached in the
database and fetched again only when its id changes or it expires; the fetch is bounded
in size and time and needs a trusted certificate."""

from __future__ import annotations

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor
from twisted.web import resource, server

from mailet_mta.config.model import TLSConfig
from mailet_mta.delivery import tls_reports
from mailet_mta.delivery.mta_sts import MTASTS, PolicyError, PolicyFetcher
from mailet_mta.delivery.tls_reports import TLSReports
from mailet_mta.storage.schema import mta_sts_policies
from mailet_mta.tls import server_context, trust_root
from tests.support.certs import make_cert, make_trusted_certs
from tests.support.delivery_harness import DeliveryHarness, listen, make_message
from tests.support.dns_zone import ZoneServer
from tests.support.scripted_smtp import ScriptedSMTPFactory

ENFORCE = "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 86400\n"
RETRY_LATER = {"delays": [3600.0], "maxRetries": 3}


class PolicyResource(resource.Resource):
    """``/.well-known/mta-sts.txt``: ``body`` with ``content_type``; ``hang`` never
    answers; ``requests`` counts the fetches."""

    isLeaf = True

    def __init__(self, body: str):
        super().__init__()
        self.body, self.content_type, self.code = body, b"text/plain", 200
        self.hang = False
        self.requests = 0

    def render_GET(self, request):
        self.requests += 1
        if self.hang:
            return server.NOT_DONE_YET
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", self.content_type)
        return self.body.encode()


def tls_context(directory, hostname):
    cert, key = make_cert(directory, hostname)
    return cert, context_of(cert, key)


def context_of(cert, key):
    return server_context(TLSConfig(certificate=str(cert), private_key=str(key)))


@pytest.fixture
def world(tmp_path):
    """The zone, the policy server, the MX peer and a harness with MTA-STS on."""
    certs, ca_file = make_trusted_certs(tmp_path / "certs", "mta-sts.a.test", "mx.a.test")
    sts_tls, mx_tls = (context_of(*certs[name]) for name in ("mta-sts.a.test", "mx.a.test"))
    policy = PolicyResource(ENFORCE)
    https = reactor.listenSSL(0, server.Site(policy), sts_tls, interface="127.0.0.1")
    zone = ZoneServer({"_mta-sts.a.test": [("TXT", "v=STSv1; id=1")],
                       "mx.a.test": [("A", "127.0.0.1")]}).start()
    peers = []

    def mx_peer(context=mx_tls):
        peer = ScriptedSMTPFactory(tls_context=context, capabilities=["PIPELINING"])
        peers.append(listen(peer))
        return peer

    def harness(peer, **kw):
        hosts = {"a.test": [f"mx.a.test:{peer.address.split(':')[1]}"],
                 "mta-sts.a.test": [f"127.0.0.1:{https.getHost().port}"]}
        h = DeliveryHarness(tmp_path, hosts, dns_servers=[zone.address], **kw)
        roots = trust_root(str(ca_file))
        h.service.trust_root = roots
        h.service.mta_sts = MTASTS(h.db, h.resolver, PolicyFetcher(
            reactor, h.resolver, roots, timeout=kw.pop("fetch_timeout", 5.0)))
        h.service.tls_reports = TLSReports(h.db, reactor, h.service.track_write)
        return h

    class World:
        pass

    w = World()
    w.policy, w.zone, w.mx_peer, w.harness, w.tmp_path = policy, zone, mx_peer, harness, tmp_path
    w.https_port, w.ca_file = https.getHost().port, ca_file
    yield w
    for port in peers:
        port.stopListening()
    https.stopListening()
    zone.stop()


async def report_rows(h):
    return [(r.policy_domain, r.policy_type, r.result_type, r.mx_host, r.count)
            for r in await h.db.read(tls_reports.counts, tls_reports.day_of(reactor.seconds()))]


async def delivered_with_reports(world, peer):
    """Deliver one mail to ``peer``; the TLS-RPT rows of today afterwards."""
    h = world.harness(peer)
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@a.test"], make_message())
        await h.until(lambda: peer.messages, what="the delivery")
        await h.settle(0.3)
        return await report_rows(h)
    finally:
        await h.stop()


async def first_attempt(h):
    return (await h.until(lambda: h.rows().addCallback(
        lambda r: r if r and r[0].attempts >= 1 and r[0].owner is None else None),
        what="the first attempt to be recorded"))[0]


@pytest_twisted.ensureDeferred
async def test_enforce_delivers_over_verified_tls_and_caches_the_policy(world):
    peer = world.mx_peer()
    h = world.harness(peer)
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@a.test"], make_message())
        await h.until(lambda: peer.messages, what="the delivery")
        assert peer.messages[0].tls
        await h.enqueue("alice@origin.test", ["carol@a.test"], make_message("two"))
        await h.until(lambda: len(peer.messages) == 2, what="the second delivery")
        assert world.policy.requests == 1          # the same id: from the cache
        [row] = await h.db.read(lambda c: list(c.execute(select(mta_sts_policies))))
        assert (row.domain, row.policy_id, row.mode, row.mx, row.max_age) == (
            "a.test", "1", "enforce", "mx.a.test", 86400)
        await h.settle(0.3)
        assert ("a.test", "sts", "success", "", 2) in await report_rows(h)
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_a_new_policy_id_fetches_the_policy_again(world):
    peer = world.mx_peer()
    h = world.harness(peer)
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@a.test"], make_message())
        await h.until(lambda: peer.messages, what="the delivery")
        world.zone.records["_mta-sts.a.test"] = [("TXT", "v=STSv1; id=2")]
        world.policy.body = ENFORCE.replace("enforce", "testing")
        await h.enqueue("alice@origin.test", ["carol@a.test"], make_message("two"))
        await h.until(lambda: len(peer.messages) == 2, what="the second delivery")
        assert world.policy.requests == 2
        [row] = await h.db.read(lambda c: list(c.execute(select(mta_sts_policies))))
        assert (row.policy_id, row.mode) == ("2", "testing")
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_enforce_defers_when_the_mx_certificate_is_not_trusted(world):
    _cert, untrusted = tls_context(world.tmp_path / "evil", "mx.a.test")
    peer = world.mx_peer(untrusted)
    h = world.harness(peer)
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@a.test"], make_message(),
                        options=RETRY_LATER)
        entry = await first_attempt(h)
        assert entry.recipients[0]["status"] == "pending" and "TLS" in entry.last_error
        assert peer.messages == []
        assert not any(c.startswith("MAIL") for c in peer.all_commands())
        await h.settle(0.3)
        assert ("a.test", "sts", "validation-failure", "mx.a.test", 1) in await report_rows(h)
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_enforce_defers_when_no_mx_matches_the_policy(world):
    world.policy.body = ENFORCE.replace("mx: mx.a.test", "mx: other.a.test")
    peer = world.mx_peer()
    h = world.harness(peer)
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@a.test"], make_message(),
                        options=RETRY_LATER)
        entry = await first_attempt(h)
        assert "4.7.5" in entry.last_error and "MTA-STS" in entry.last_error
        assert entry.recipients[0]["status"] == "pending"
        assert peer.connections == 0
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_testing_mode_delivers_over_an_unverified_certificate_and_reports_it(world):
    world.policy.body = ENFORCE.replace("enforce", "testing")
    _cert, untrusted = tls_context(world.tmp_path / "evil", "mx.a.test")
    peer = world.mx_peer(untrusted)
    reports = await delivered_with_reports(world, peer)
    assert peer.messages[0].tls                      # unverified TLS, not plaintext
    assert ("a.test", "sts", "validation-failure", "mx.a.test", 1) in reports
    assert not any(r[2] == "success" for r in reports)


@pytest_twisted.ensureDeferred
async def test_testing_mode_counts_a_verified_session_as_success(world):
    world.policy.body = ENFORCE.replace("enforce", "testing")
    reports = await delivered_with_reports(world, world.mx_peer())
    assert reports == [("a.test", "sts", "success", "", 1)]


@pytest_twisted.ensureDeferred
async def test_testing_mode_delivers_to_an_unlisted_mx_and_reports_it(world):
    world.policy.body = "version: STSv1\nmode: testing\nmx: other.a.test\nmax_age: 600\n"
    _cert, untrusted = tls_context(world.tmp_path / "evil", "mx.a.test")
    reports = await delivered_with_reports(world, world.mx_peer(untrusted))
    assert reports == [("a.test", "sts", "validation-failure", "mx.a.test", 1)]


@pytest_twisted.ensureDeferred
async def test_a_policy_that_cannot_be_fetched_is_reported_and_mail_still_goes(world):
    world.policy.code = 404
    reports = await delivered_with_reports(world, world.mx_peer())
    assert ("a.test", "sts", "sts-policy-fetch-error", "", 1) in reports


def fetcher(world, h, timeout=5.0, ca=True):
    roots = trust_root(str(world.ca_file)) if ca else None
    return PolicyFetcher(reactor, h.resolver, roots, timeout=timeout)


@pytest_twisted.ensureDeferred
async def test_fetch_stops_at_64_kib(world):
    world.policy.body = ENFORCE + "#" * (64 * 1024)
    h = world.harness(world.mx_peer())
    try:
        with pytest.raises(PolicyError, match="larger than 65536 octets"):
            await fetcher(world, h).fetch("a.test")
        world.policy.body = ENFORCE + "#" * (60 * 1024)        # under the limit: fine
        assert (await fetcher(world, h).fetch("a.test")).startswith("version: STSv1")
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_fetch_gives_up_after_its_timeout(world):
    world.policy.hang = True
    h = world.harness(world.mx_peer())
    try:
        start = reactor.seconds()
        with pytest.raises(PolicyError, match="took more than 0.5 s") as caught:
            await fetcher(world, h, timeout=0.5).fetch("a.test")
        assert reactor.seconds() - start < 3
        assert caught.value.result_type == "sts-policy-fetch-error"
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_fetch_needs_a_trusted_certificate_and_text_plain(world):
    h = world.harness(world.mx_peer())
    try:
        with pytest.raises(PolicyError) as caught:
            await fetcher(world, h, ca=False).fetch("a.test")   # the system's CAs
        assert caught.value.result_type in ("sts-webpki-invalid", "sts-policy-fetch-error")
        world.policy.content_type = b"text/html"
        with pytest.raises(PolicyError, match="not text/plain"):
            await fetcher(world, h).fetch("a.test")
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_cached_policy_is_used_until_max_age_then_fetched_again(world):
    from twisted.internet import task

    world.policy.body = ENFORCE.replace("86400", "600")
    h = world.harness(world.mx_peer())
    clock = task.Clock()
    clock.advance(1_000_000)
    sts = MTASTS(h.db, h.resolver, fetcher(world, h), clock=clock)
    try:
        first = await sts.policy_for("a.test")
        assert (first.mode, first.max_age, world.policy.requests) == ("enforce", 600, 1)
        clock.advance(599)
        world.zone.records.pop("_mta-sts.a.test")         # §5.1: no record, cache holds
        assert (await sts.policy_for("a.test")) == first
        assert world.policy.requests == 1
        clock.advance(2)                                   # expired, still no record
        assert await sts.policy_for("a.test") is None
        world.zone.add("_mta-sts.a.test", "TXT", "v=STSv1; id=1")
        assert (await sts.policy_for("a.test")).fetched_at == clock.seconds()
        assert world.policy.requests == 2
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_concurrent_lookups_of_one_domain_share_one_fetch(world):
    from twisted.internet import defer

    h = world.harness(world.mx_peer())
    sts = MTASTS(h.db, h.resolver, fetcher(world, h))
    try:
        policies = await defer.gatherResults(
            [defer.ensureDeferred(sts.policy_for("a.test")) for _ in range(5)])
        assert {p.mode for p in policies} == {"enforce"}
        assert world.policy.requests == 1 and sts.fetches == 1
    finally:
        await h.stop()
