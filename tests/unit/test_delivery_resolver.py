"""MX resolution against a real twisted.names server on 127.0.0.1 and the static table."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.names import authority, common, dns, server

from mailet_mta.config.model import DNSConfig
from mailet_mta.delivery.resolver import DNSPermanentError, DNSTemporaryError, Resolver

SOA = dns.Record_SOA(mname=b"ns.test", rname=b"admin.test", serial=1, refresh=60,
                     retry=60, expire=60, minimum=60)


class MemoryAuthority(authority.FileAuthority):
    """An authoritative zone held in a dict (no zone file)."""

    def __init__(self, origin: bytes, records: dict[bytes, list]):
        common.ResolverBase.__init__(self)
        self.soa = (origin, SOA)
        self.records = {origin: [SOA]}
        for name, recs in records.items():
            self.records.setdefault(name, []).extend(recs)
        self._cache = {}


def mx(pref, name):
    return dns.Record_MX(preference=pref, name=name)


ZONE = {
    b"pref.test": [mx(20, b"mx-c.pref.test"), mx(10, b"mx-a.pref.test"),
                   mx(10, b"mx-b.pref.test")],
    b"mx-a.pref.test": [dns.Record_A("127.0.0.11")],
    b"mx-b.pref.test": [dns.Record_A("127.0.0.12"), dns.Record_AAAA("::1")],
    b"mx-c.pref.test": [dns.Record_A("127.0.0.13")],
    b"amail.test": [dns.Record_A("127.0.0.20")],
    b"nullmx.test": [mx(0, b"")],
    b"nothing.test": [dns.Record_TXT(b"v=spf1 -all")],
}


@pytest.fixture
def dns_server():
    auth = MemoryAuthority(b"test", ZONE)
    factory = server.DNSServerFactory(authorities=[auth])
    # The TCP twin of the UDP port may belong to another process: take another pair.
    for _attempt in range(20):
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        try:
            tcp = reactor.listenTCP(udp.getHost().port, factory, interface="127.0.0.1")
            break
        except CannotListenError:
            udp.stopListening()
    else:
        pytest.fail("no UDP port whose TCP twin was free in 20 tries")
    yield f"127.0.0.1:{udp.getHost().port}"
    udp.stopListening()
    tcp.stopListening()


def resolver(addr, shuffle=None, hosts=None):
    kw = {"shuffle": shuffle} if shuffle else {}
    return Resolver(DNSConfig(servers=[addr], hosts=hosts or {}, timeout=2), **kw)


@pytest_twisted.ensureDeferred
async def test_mx_hosts_are_ordered_by_preference(dns_server):
    hosts = await resolver(dns_server, shuffle=lambda group: group.sort()).mx_hosts("pref.test")
    assert hosts == [(10, "mx-a.pref.test", 25), (10, "mx-b.pref.test", 25),
                     (20, "mx-c.pref.test", 25)]


@pytest_twisted.ensureDeferred
async def test_equal_preference_hosts_are_shuffled(dns_server):
    shuffled = []

    def shuffle(group):
        shuffled.append(list(group))
        group.reverse()

    hosts = await resolver(dns_server, shuffle=shuffle).mx_hosts("pref.test")
    assert sorted(shuffled[0]) == ["mx-a.pref.test", "mx-b.pref.test"]
    assert [h for _p, h, _port in hosts][2] == "mx-c.pref.test"
    assert [h for _p, h, _port in hosts][:2] == list(reversed(shuffled[0]))


@pytest_twisted.ensureDeferred
async def test_domain_without_mx_falls_back_to_its_address(dns_server):
    assert await resolver(dns_server).mx_hosts("amail.test") == [(0, "amail.test", 25)]


@pytest_twisted.ensureDeferred
async def test_null_mx_is_a_permanent_failure(dns_server):
    with pytest.raises(DNSPermanentError, match="null MX"):
        await resolver(dns_server).mx_hosts("nullmx.test")


@pytest_twisted.ensureDeferred
async def test_nxdomain_is_a_permanent_failure(dns_server):
    with pytest.raises(DNSPermanentError, match="NXDOMAIN"):
        await resolver(dns_server).mx_hosts("missing.test")


@pytest_twisted.ensureDeferred
async def test_domain_with_neither_mx_nor_address_is_a_permanent_failure(dns_server):
    with pytest.raises(DNSPermanentError):
        await resolver(dns_server).mx_hosts("nothing.test")


@pytest_twisted.ensureDeferred
async def test_unanswered_query_is_a_temporary_failure():
    silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
    try:
        r = Resolver(DNSConfig(servers=[f"127.0.0.1:{silent.getHost().port}"], timeout=0.3))
        with pytest.raises(DNSTemporaryError):
            await r.mx_hosts("pref.test")
    finally:
        silent.stopListening()


@pytest_twisted.ensureDeferred
async def test_lookup_returns_ipv4_and_ipv6_addresses(dns_server):
    assert await resolver(dns_server).lookup("mx-b.pref.test") == ["127.0.0.12", "::1"]
    assert await resolver(dns_server).lookup("127.0.0.5") == ["127.0.0.5"]


@pytest_twisted.ensureDeferred
async def test_static_table_is_checked_before_dns(dns_server):
    r = resolver(dns_server, hosts={"pref.test": ["127.0.0.1:2525", "[::1]:2526", "relay"]})
    assert await r.mx_hosts("PREF.test") == [(0, "127.0.0.1", 2525), (1, "::1", 2526),
                                             (2, "relay", 25)]


@pytest_twisted.ensureDeferred
async def test_address_literal_domain_is_delivered_to_that_address(dns_server):
    assert await resolver(dns_server).mx_hosts("[127.0.0.7]") == [(0, "127.0.0.7", 25)]
