"""Outgoing queue with a real DNS server on 127.0.0.1: domains that cannot get mail."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns, server

from mailet_mta.config.model import DNSConfig
from mailet_mta.delivery.resolver import Resolver
from tests.support.delivery_harness import DeliveryHarness, make_message
from tests.unit.test_delivery_resolver import MemoryAuthority, mx

ERROR_ATTR = "mailet_mta.delivery.error"


@pytest.fixture
def dns_addr():
    auth = MemoryAuthority(b"test", {b"nullmx.test": [mx(0, b"")]})
    udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(server.DNSServerFactory(
        authorities=[auth])), interface="127.0.0.1")
    yield f"127.0.0.1:{udp.getHost().port}"
    udp.stopListening()


def harness(tmp_path, servers):
    h = DeliveryHarness(tmp_path, {})
    h.service.resolver = h.resolver = Resolver(DNSConfig(servers=servers, timeout=0.3))
    return h


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("domain,status", [("missing.test", "5.1.2"),
                                           ("nullmx.test", "5.1.10")])
async def test_domain_that_cannot_receive_mail_bounces_at_once(tmp_path, dns_addr, domain,
                                                               status):
    h = harness(tmp_path, [dns_addr])
    h.start()
    try:
        await h.enqueue("alice@origin.test", [f"bob@{domain}"], make_message(),
                        options={"maxRetries": 5})
        await h.until(lambda: h.injected, what="the bounce")
        error = h.injected[0].get_attribute(ERROR_ATTR)[f"bob@{domain}"]
        assert error["permanent"] is True and status in error["text"]
        await h.until(lambda: h.rows().addCallback(lambda r: r == []), what="removal")
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_dns_trouble_is_retried_up_to_max_dns_problem_retries(tmp_path):
    silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
    h = harness(tmp_path, [f"127.0.0.1:{silent.getHost().port}"])
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@slow.test"], make_message(),
                        options={"maxDnsProblemRetries": 1, "delays": [0.2]})
        await h.until(lambda: h.injected, what="the bounce")
        error = h.injected[0].get_attribute(ERROR_ATTR)["bob@slow.test"]
        assert error["permanent"] is False and "4.4.3" in error["text"]
        assert h.service.claimed == 0
    finally:
        await h.stop()
        silent.stopListening()
