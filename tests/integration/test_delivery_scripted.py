"""The outgoing queue against a scripted SMTP peer: retries, partial failures, dropped
connections, STARTTLS, AUTH, and the mail's needs the next hop cannot meet."""

from __future__ import annotations

import socket
import time

import pytest
import pytest_twisted
from twisted.internet import task

from mailet_mta.api import ATTR_BODY
from mailet_mta.config.model import TLSConfig
from mailet_mta.delivery.credentials import RelayCredentials
from mailet_mta.tls import server_context
from tests.support.certs import make_cert
from tests.support.delivery_harness import DeliveryHarness, listen, make_message
from tests.support.scripted_smtp import ScriptedSMTPFactory

ERROR_ATTR = "mailet_mta.delivery.error"


@pytest.fixture
def peer():
    ports = []

    def start(**kw):
        factory = ScriptedSMTPFactory(**kw)
        port = listen(factory)
        ports.append(port)
        factory.address = f"127.0.0.1:{port.getHost().port}"
        return factory

    yield start
    for port in ports:
        port.stopListening()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def rows(h):
    return await h.rows()


@pytest_twisted.ensureDeferred
async def test_temporary_failure_is_retried_on_the_delay_time_schedule(tmp_path, peer):
    smtp = peer(mail_replies=["451 4.3.0 try again later"])
    clock = task.Clock()
    clock.advance(time.time())
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]}, clock=clock)
    h.start()
    try:
        t0 = clock.seconds()
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options={"delays": [300.0], "maxRetries": 3})
        entries = await h.until(lambda: h.rows().addCallback(
            lambda r: r if r and r[0].attempts == 1 and r[0].owner is None else None),
            what="the first attempt to be recorded")
        assert entries[0].next_attempt == pytest.approx(t0 + 300, abs=1)
        assert "451 4.3.0" in entries[0].last_error
        assert smtp.messages == []
        clock.advance(290)
        await h.settle()
        assert smtp.messages == []
        clock.advance(10)
        await h.until(lambda: smtp.messages, what="the retry")
        assert len(smtp.messages) == 1
        await h.until(lambda: h.rows().addCallback(lambda r: r == []), what="removal")
        assert h.injected == []
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_sendpartial_delivers_to_accepted_recipients_and_bounces_the_refused(
        tmp_path, peer):
    smtp = peer(rcpt_replies={"nobody@example.com": ["550 5.1.1 no such user"]})
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com", "nobody@example.com"],
                        make_message(), options={"sendPartial": True})
        await h.until(lambda: h.injected, what="the bounce")
        assert [m.rcpt_to for m in smtp.messages] == [["bob@example.com"]]
        bounce = h.injected[0]
        assert bounce.state == "bounces"
        assert [str(r) for r in bounce.recipients] == ["nobody@example.com"]
        assert str(bounce.sender) == "alice@origin.test"
        error = bounce.get_attribute(ERROR_ATTR)["nobody@example.com"]
        assert error["code"] == 550 and error["permanent"] is True
        assert "5.1.1 no such user" in error["text"]
        assert "5.1.1 no such user" in bounce.error_message
        assert bounce.message_bytes() == make_message()
        await h.until(lambda: h.rows().addCallback(lambda r: r == []), what="removal")
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_without_sendpartial_a_refused_recipient_stops_the_transaction(tmp_path, peer):
    smtp = peer(rcpt_replies={"nobody@example.com": ["550 5.1.1 no such user"]})
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com", "nobody@example.com"],
                        make_message(), options={"sendPartial": False, "delays": [0.5]})
        await h.until(lambda: h.injected, what="the bounce")
        assert [str(r) for r in h.injected[0].recipients] == ["nobody@example.com"]
        assert "DATA" not in smtp.commands[0]
        # The accepted recipient is sent on the next attempt, alone.
        await h.until(lambda: smtp.messages, what="the retry to bob")
        assert [m.rcpt_to for m in smtp.messages] == [["bob@example.com"]]
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_connection_dropped_mid_data_is_retried_and_delivered_once(tmp_path, peer):
    smtp = peer(drop_in_data=1)
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options={"delays": [0.3]})
        await h.until(lambda: smtp.messages, what="the retried delivery")
        await h.until(lambda: h.rows().addCallback(lambda r: r == []), what="removal")
        await h.settle(0.5)
        assert len(smtp.messages) == 1
        assert smtp.connections >= 2
        assert h.injected == []
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_next_mx_is_tried_when_the_first_cannot_be_reached(tmp_path, peer):
    smtp = peer()
    h = DeliveryHarness(tmp_path, {"example.com": [f"127.0.0.1:{closed_port()}",
                                                   smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message())
        await h.until(lambda: smtp.messages, what="delivery through the second MX")
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_next_mx_is_tried_after_a_4xx_reply(tmp_path, peer):
    busy = peer(mail_replies=["421 4.3.2 busy"])
    good = peer()
    h = DeliveryHarness(tmp_path, {"example.com": [busy.address, good.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message())
        await h.until(lambda: good.messages, what="delivery through the second MX")
        assert busy.messages == []
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_starttls_offered_is_used_without_verification_by_default(tmp_path, peer):
    cert, key = make_cert(tmp_path / "certs")
    smtp = peer(tls_context=server_context(TLSConfig(certificate=str(cert),
                                                     private_key=str(key))))
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message())
        await h.until(lambda: smtp.messages, what="delivery")
        assert smtp.messages[0].tls is True
        assert smtp.all_commands().count("EHLO relay.test") == 2
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_opportunistic_tls_falls_back_to_plain_when_the_handshake_fails(tmp_path, peer):
    cert, key = make_cert(tmp_path / "certs")
    smtp = peer(tls_context=server_context(TLSConfig(certificate=str(cert),
                                                     private_key=str(key))), tls_broken=True)
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        # The peer hangs up instead of the handshake; without verifyServerIdentity the
        # mail goes in clear on a second connection (a verification failure never does:
        # see tests/abuse/test_hostile_peers.py).
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options={"startTLS": "opportunistic", "verifyServerIdentity": False})
        await h.until(lambda: smtp.messages, what="delivery")
        assert smtp.messages[0].tls is False
        assert smtp.connections == 2
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_required_starttls_not_offered_is_not_delivered_and_bounces(tmp_path, peer):
    smtp = peer()
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options={"startTLS": "required", "maxRetries": 1, "delays": [0.2]})
        await h.until(lambda: h.injected, what="the bounce")
        assert smtp.messages == []
        assert "MAIL" not in " ".join(smtp.all_commands())
        assert smtp.connections == 2             # first attempt and one retry
        error = h.injected[0].get_attribute(ERROR_ATTR)["bob@example.com"]
        assert error["permanent"] is False
        assert "STARTTLS" in error["text"]
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_a_row_queued_with_its_own_gateway_password_still_delivers(tmp_path, peer):
    # Rows written before passwords moved out of the queue carry gatewayPassword.
    smtp = peer(auth=("relayuser", "s3cret"))
    host, port = smtp.address.split(":")
    h = DeliveryHarness(tmp_path, {})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com", "carol@other.test"],
                        make_message(), options={
                            "gateways": [[host, int(port)]], "gatewayUsername": "relayuser",
                            "gatewayPassword": "s3cret"})
        await h.until(lambda: smtp.messages, what="delivery through the gateway")
        assert smtp.messages[0].auth == "relayuser"
        assert sorted(smtp.messages[0].rcpt_to) == ["bob@example.com", "carol@other.test"]
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_8bit_mail_to_a_host_without_8bitmime_bounces_with_5_6_3(tmp_path, peer):
    smtp = peer(capabilities=["PIPELINING"])
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        attributes={ATTR_BODY: "8BITMIME"})
        await h.until(lambda: h.injected, what="the bounce")
        assert smtp.messages == []
        assert "5.6.3" in h.injected[0].get_attribute(ERROR_ATTR)["bob@example.com"]["text"]
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_mail_parameters_declare_size_and_8bitmime(tmp_path, peer):
    smtp = peer()
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        data = make_message()
        await h.enqueue("alice@origin.test", ["bob@example.com"], data,
                        attributes={ATTR_BODY: "8BITMIME"})
        await h.until(lambda: smtp.messages, what="delivery")
        assert f"SIZE={len(data)}" in smtp.messages[0].mail_command
        assert "BODY=8BITMIME" in smtp.messages[0].mail_command
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_helo_is_used_when_ehlo_is_refused(tmp_path, peer):
    smtp = peer(ehlo_supported=False)
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message())
        await h.until(lambda: smtp.messages, what="delivery")
        assert "HELO relay.test" in smtp.all_commands()
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_a_recipient_that_got_250_is_not_sent_again_after_a_restart(tmp_path, peer):
    smtp = peer()
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    ids = await h.enqueue("alice@origin.test", ["bob@example.com", "carol@example.com"],
                          make_message())
    from mailet_mta.delivery import queue_store

    def mark_bob_sent(conn):
        entry = queue_store.get_entry(conn, ids[0])
        entry.recipients[0].update(status="sent", code=250)
        # a lease held by a node that died a while ago
        conn.execute(queue_store.T.update().values(
            recipients=__import__("json").dumps(entry.recipients), owner="dead-node",
            lease_until=time.time() - 1))

    await h.db.write(mark_bob_sent)
    h.start()
    try:
        await h.until(lambda: smtp.messages, what="delivery")
        assert smtp.messages[0].rcpt_to == ["carol@example.com"]
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_on_success_sends_a_copy_of_the_delivered_mail(tmp_path, peer):
    smtp = peer()
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]})
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(),
                        options={"onSuccess": "delivered"})
        await h.until(lambda: h.injected, what="the onSuccess copy")
        copy = h.injected[0]
        assert copy.state == "delivered" and [str(r) for r in copy.recipients] == [
            "bob@example.com"]
        assert len(smtp.messages) == 1
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_a_backlog_for_one_destination_uses_per_destination_connections(tmp_path, peer):
    smtp = peer()
    h = DeliveryHarness(tmp_path, {"example.com": [smtp.address]}, per_destination=2)
    for i in range(6):
        await h.enqueue("alice@origin.test", [f"u{i}@example.com"], make_message(f"m{i}"))
    h.start()
    try:
        await h.until(lambda: len(smtp.messages) == 6, what="six deliveries")
        assert smtp.connections == 2
        assert sorted({m.connection for m in smtp.messages}) == [0, 1]
    finally:
        await h.stop()


def credentials(host, port, user, password) -> RelayCredentials:
    table = RelayCredentials()
    table.add(host, int(port), user, password)
    return table


@pytest_twisted.ensureDeferred
async def test_gateway_password_is_looked_up_in_the_configuration_at_delivery(tmp_path,
                                                                            peer):
    smtp = peer(auth=("relayuser", "s3cret"))
    host, port = smtp.address.split(":")
    h = DeliveryHarness(tmp_path, {}, credentials=credentials(host, port, "relayuser",
                                                              "s3cret"))
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(), options={
            "gateways": [[host, int(port)]], "gatewayUsername": "relayuser"})
        await h.until(lambda: smtp.messages, what="delivery through the gateway")
        assert smtp.messages[0].auth == "relayuser"
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_a_gateway_user_without_a_configured_password_is_deferred_unsent(tmp_path,
                                                                             peer):
    smtp = peer(auth=("relayuser", "s3cret"))
    host, port = smtp.address.split(":")
    h = DeliveryHarness(tmp_path, {}, credentials=credentials(host, port, "other", "x"))
    h.start()
    try:
        await h.enqueue("alice@origin.test", ["bob@example.com"], make_message(), options={
            "gateways": [[host, int(port)]], "gatewayUsername": "relayuser",
            "delays": [3600.0]})
        rows = await h.until(lambda: h.rows().addCallback(
            lambda r: r if r and r[0].attempts == 1 and r[0].owner is None else None),
            what="the deferral")
        assert "no password is configured for the gateway user relayuser" in \
            rows[0].last_error
        assert "smarthost.password" in rows[0].last_error
        assert smtp.connections == 0 and smtp.messages == []
    finally:
        await h.stop()
