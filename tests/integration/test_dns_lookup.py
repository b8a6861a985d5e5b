"""Mailets' DNS: ``IMailetContext.dns_lookup`` through twisted.names to a zone on
127.0.0.1, with the reactor free while the answer is awaited."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.protocol import DatagramProtocol

from mailet_mta.api import TemporaryError
from mailet_mta.config.model import DNSConfig
from mailet_mta.context import MailetContext
from mailet_mta.delivery.resolver import Resolver
from tests.support.dns_zone import ZoneServer

LONG_TXT = "v=DKIM1; k=rsa; p=" + "A" * 400


@pytest.fixture
def zone():
    server = ZoneServer({
        "example.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all"), ("A", "127.0.0.1"),
                         ("MX", (10, "mx.example.test")), ("AAAA", "::1")],
        "sel._domainkey.example.test": [("TXT", LONG_TXT)],
        "1.0.0.127.in-addr.arpa": [("PTR", "mx.example.test")],
    }).start()
    yield server
    server.stop()


def context_for(servers):
    ctx = MailetContext.__new__(MailetContext)
    ctx.resolver = Resolver(DNSConfig(servers=servers, timeout=0.5))
    return ctx


@pytest_twisted.ensureDeferred
async def test_dns_lookup_answers_each_record_type_from_the_zone(zone):
    ctx = context_for([zone.address])
    assert await ctx.dns_lookup("example.test") == [b"v=spf1 ip4:127.0.0.1 -all"]
    assert await ctx.dns_lookup("example.test", "A") == ["127.0.0.1"]
    assert await ctx.dns_lookup("example.test", "AAAA") == ["::1"]
    assert await ctx.dns_lookup("example.test", "MX") == [(10, "mx.example.test")]
    assert await ctx.dns_lookup("1.0.0.127.in-addr.arpa", "PTR") == ["mx.example.test"]


@pytest_twisted.ensureDeferred
async def test_dns_lookup_joins_the_strings_of_a_long_txt_record(zone):
    ctx = context_for([zone.address])
    assert await ctx.dns_lookup("sel._domainkey.example.test") == [LONG_TXT.encode()]


@pytest_twisted.ensureDeferred
async def test_dns_lookup_of_a_missing_name_or_type_is_empty(zone):
    ctx = context_for([zone.address])
    assert await ctx.dns_lookup("missing.example.test") == []
    assert await ctx.dns_lookup("1.0.0.127.in-addr.arpa", "TXT") == []


@pytest_twisted.ensureDeferred
async def test_dns_lookup_timeout_is_a_temporary_error_and_the_reactor_keeps_running():
    silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
    ticks = []
    loop = task.LoopingCall(lambda: ticks.append(time.monotonic()))
    loop.start(0.05)
    try:
        ctx = context_for([f"127.0.0.1:{silent.getHost().port}"])
        with pytest.raises(TemporaryError):
            await ctx.dns_lookup("slow.test")
        assert len(ticks) >= 3        # the reactor ran other work while waiting
    finally:
        loop.stop()
        silent.stopListening()

