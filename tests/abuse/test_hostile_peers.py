"""The outbound client against hostile next hops on loopback: endless and trickling
replies, STARTTLS response injection, a certificate that fails verification, and a
message body that would smuggle a second mail through bare CRs.

Each next hop is a scripted Twisted server on 127.0.0.1; the real outgoing queue
(SQLite, blob store, worker, session, client) delivers to it. What must hold: memory
and time stay bounded, the destination is deferred (a temporary failure, retried
later), and nothing is delivered or sent in clear that should not be.
"""

from __future__ import annotations

import resource

import pytest
import pytest_twisted

from mailet_mta.config.model import TLSConfig
from mailet_mta.tls import server_context
from tests.support.certs import make_cert
from tests.support.delivery_harness import DeliveryHarness, listen, make_message
from tests.support.hostile_smtp import HostileNextHop
from tests.support.scripted_smtp import ScriptedSMTPFactory

RETRY_LATER = {"delays": [3600.0], "maxRetries": 3}


@pytest.fixture
def ports():
    opened = []

    def start(factory):
        opened.append(listen(factory))
        return factory

    yield start
    for port in opened:
        port.stopListening()


async def deferred_entry(h, what):
    """The queue row once its first attempt was recorded as a temporary failure."""
    rows = await h.until(lambda: h.rows().addCallback(
        lambda r: r if r and r[0].attempts >= 1 and r[0].owner is None else None),
        timeout=20, what=what)
    entry = rows[0]
    assert [r["status"] for r in entry.recipients] == ["pending"]
    return entry


def tls_peer(tmp_path, **kw) -> ScriptedSMTPFactory:
    cert, key = make_cert(tmp_path / "certs")
    return ScriptedSMTPFactory(tls_context=server_context(TLSConfig(
        certificate=str(cert), private_key=str(key))), **kw)


@pytest_twisted.ensureDeferred
async def test_endless_ehlo_continuation_is_cut_off_and_the_destination_deferred(
        tmp_path, ports):
    peer = ports(HostileNextHop("endless"))
    h = DeliveryHarness(tmp_path, {"example.com": [peer.address]})
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # KiB
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options={**RETRY_LATER, "timeout": 60.0})
        entry = await deferred_entry(h, "the endless reply to be refused")
        assert "100 lines" in entry.last_error and "65536 octets" in entry.last_error
        assert peer.closed_after and peer.closed_after[0] < 10
        # What the peer could write before the client hung up: the capped reply plus
        # what the loopback socket buffers hold; on an unbounded client, hundreds of MB.
        assert peer.written < 32 * 1024 * 1024
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
        assert grown < 64 * 1024, f"peak memory grew by {grown} KiB"
        assert not any(c.startswith("MAIL") for c in peer.commands)
        assert h.injected == []
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_trickling_reply_meets_its_deadline_and_the_destination_is_deferred(
        tmp_path, ports):
    peer = ports(HostileNextHop("trickle", interval=0.05))
    h = DeliveryHarness(tmp_path, {"example.com": [peer.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options={**RETRY_LATER, "timeout": 2.0})
        entry = await deferred_entry(h, "the trickling reply to time out")
        assert "no complete reply within 2 seconds" in entry.last_error
        assert 1.5 < peer.closed_after[0] < 10
        assert peer.written > 20              # it was still trickling when cut off
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_starttls_response_injection_aborts_and_nothing_is_delivered(
        tmp_path, ports):
    # A man in the middle answers for the server before TLS starts: a fake EHLO reply
    # without STARTTLS, then replies for a whole transaction.
    injected = (b"250 fake.test\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"
                b"250 2.0.0 queued\r\n")
    peer = ports(tls_peer(tmp_path, starttls_injection=injected))
    h = DeliveryHarness(tmp_path, {"example.com": [peer.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options=RETRY_LATER)
        entry = await deferred_entry(h, "the injection to be refused")
        assert "STARTTLS" in entry.last_error and "injection" in entry.last_error
        assert peer.messages == []
        assert not any(c.startswith(("MAIL", "RCPT", "DATA")) for c in peer.all_commands())
        assert peer.connections == 1          # no retry in clear on another connection
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_failed_certificate_verification_defers_and_never_sends_in_clear(
        tmp_path, ports):
    peer = ports(tls_peer(tmp_path))         # self-signed: verification fails
    h = DeliveryHarness(tmp_path, {"example.com": [peer.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options={**RETRY_LATER, "startTLS": "opportunistic",
                                 "verifyServerIdentity": True})
        entry = await deferred_entry(h, "the verification failure to defer")
        assert "TLS" in entry.last_error
        await h.settle(0.5)
        assert peer.messages == []
        assert not any(c.startswith(("MAIL", "DATA")) for c in peer.all_commands())
        assert peer.connections == 1
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_bare_cr_and_lf_in_the_body_leave_only_as_crlf(tmp_path, ports):
    peer = ports(ScriptedSMTPFactory())
    h = DeliveryHarness(tmp_path, {"example.com": [peer.address]})
    h.start()
    try:
        smuggled = ("hello\r.\r\nMAIL FROM:<mallory@evil.test>\r\n"
                    "RCPT TO:<victim@example.com>\r\nDATA\r\nforged\r\n.\r"
                    "\nlast\n.\nline\r")
        await h.enqueue("alice@origin.test", ["bob@example.com"],
                        make_message(body=smuggled))
        await h.until(lambda: peer.messages, what="the delivery")
        data = peer.messages[0].data
        assert data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n")
        assert data.endswith(b"hello\r\n.\r\nMAIL FROM:<mallory@evil.test>\r\n"
                             b"RCPT TO:<victim@example.com>\r\nDATA\r\nforged\r\n.\r\n"
                             b"last\r\n.\r\nline\r\n")
        assert [c for c in peer.all_commands() if c.startswith("MAIL")] == [
            "MAIL FROM:<alice@origin.test> SIZE=%d" % len(make_message(body=smuggled))]
        assert len(peer.messages) == 1
    finally:
        await h.stop()
