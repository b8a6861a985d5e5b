"""ESMTP extensions and session behaviour, on a StringTransport."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from mailet_mta.address import MailAddress
from mailet_mta.api import (
    ATTR_AUTH_NETWORK,
    ATTR_AUTH_USER,
    ATTR_BODY,
    ATTR_DSN_ENVID,
    ATTR_DSN_RCPT,
    ATTR_DSN_RET,
    ATTR_HELO,
    ATTR_REMOTE_ADDR,
    ATTR_SMTPUTF8,
    ATTR_TLS,
)
from mailet_mta.storage.blobs import HELD_PER_WRITER
from tests.support.smtp_backend import FakeSession

TX = b"MAIL FROM:<x@remote.net>\r\nRCPT TO:<alice@example.com>\r\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def session(tmp_path, **kw):
    s = FakeSession(tmp_path, **kw)
    s.ehlo()
    return s


def test_ehlo_advertises_every_extension(tmp_path):
    s = FakeSession(tmp_path, tls_context=object())
    keywords = [r[4:] for r in s.ehlo()[1:]]
    assert keywords == ["PIPELINING", "SIZE 1000000", "8BITMIME", "ENHANCEDSTATUSCODES",
                        "STARTTLS", "AUTH PLAIN LOGIN", "SMTPUTF8", "CHUNKING", "DSN"]


def test_pipelined_batch_gets_replies_in_order_in_one_write(tmp_path):
    s = session(tmp_path)
    writes = []
    orig = s.transport.write
    s.transport.write = lambda data: (writes.append(data), orig(data))
    codes = s.codes(b"RSET\r\nMAIL FROM:<x@remote.net>\r\nRCPT TO:<nobody@example.com>\r\n"
                    b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
    assert codes == [250, 250, 550, 250, 354] and len(writes) == 1


def test_pipelined_commands_wait_for_a_slow_commit(tmp_path):
    s = session(tmp_path)
    gate = defer.Deferred()
    s.backend.accept_gate = gate
    s.send(TX + b"DATA\r\n")
    assert s.send(b"one\r\n.\r\n" + TX + b"DATA\r\n") == []
    assert s.transport.producerState == "paused"
    gate.callback(None)
    assert [int(r[:3]) for r in s.take()] == [250, 250, 250, 354]
    assert s.send(b"two\r\n.\r\n")[0].startswith("250 2.0.0 Ok: queued as ")
    assert len(s.backend.accepted) == 2


def test_several_transactions_and_null_reverse_path(tmp_path):
    s = session(tmp_path)
    for sender in (b"<>", b"<x@remote.net>"):
        assert s.codes(b"MAIL FROM:" + sender + b"\r\nRCPT TO:<bob@example.com>\r\n"
                       b"DATA\r\n") == [250, 250, 354]
        assert s.codes(b"body\r\n.\r\n") == [250]
    assert [m.sender for m, _ in s.backend.accepted] == [None,
                                                         MailAddress.parse("x@remote.net")]


def test_rset_forgets_the_transaction(tmp_path):
    s = session(tmp_path)
    s.send(TX)
    assert s.codes(b"RSET\r\nDATA\r\n") == [250, 503]


def test_noop_vrfy_help_work(tmp_path):
    s = session(tmp_path)
    assert s.codes(b"NOOP\r\nVRFY alice\r\nHELP\r\n") == [250, 252, 214]


def test_vrfy_answers_250_or_550_when_enabled(tmp_path):
    s = session(tmp_path, enable_vrfy=True)
    assert s.cmd("VRFY <alice@example.com>") == "250 2.1.5 <alice@example.com>"
    assert s.cmd("VRFY <nobody@example.com>").startswith("550 5.1.1 ")


def test_size_declared_within_limit_is_accepted(tmp_path):
    s = session(tmp_path, max_message_size=1000)
    assert s.cmd("MAIL FROM:<x@remote.net> SIZE=999").startswith("250")


def test_8bitmime_body_parameter_kept_as_attribute(tmp_path):
    s = session(tmp_path)
    s.send(b"MAIL FROM:<x@remote.net> BODY=8BITMIME\r\nRCPT TO:<alice@example.com>\r\n"
           b"DATA\r\n")
    s.send("Subject: caf\u00e9\r\n\r\n\u00e9t\u00e9\r\n.\r\n".encode())
    mail, _ = s.backend.accepted[0]
    assert mail.get_attribute(ATTR_BODY) == "8BITMIME"
    assert mail.message_bytes().endswith("\u00e9t\u00e9\r\n".encode())


def test_unknown_body_value_is_a_syntax_error(tmp_path):
    s = session(tmp_path)
    assert s.cmd("MAIL FROM:<x@remote.net> BODY=BINARYMIME").startswith("501 5.5.4")


def test_auth_plain_initial_response(tmp_path):
    s = session(tmp_path)
    assert s.login() == "235 2.7.0 Authentication successful"
    assert s.backend.auth_calls == [("alice", "secret", "203.0.113.5")]


def test_auth_plain_challenge_form(tmp_path):
    s = session(tmp_path)
    assert s.cmd("AUTH PLAIN") == "334 "
    assert s.cmd(b64("\0alice\0secret")).startswith("235")


def test_auth_login_with_initial_response(tmp_path):
    s = session(tmp_path)
    assert s.cmd("AUTH LOGIN " + b64("alice")) == "334 " + b64("Password:")
    assert s.cmd(b64("secret")).startswith("235")


def test_auth_star_cancels_with_501(tmp_path):
    s = session(tmp_path)
    s.cmd("AUTH LOGIN")
    assert s.cmd("*") == "501 5.0.0 Authentication cancelled"
    assert s.cmd("NOOP").startswith("250")


def test_auth_bad_base64_is_501_and_connection_stays(tmp_path):
    s = session(tmp_path)
    assert s.cmd("AUTH PLAIN !!!notbase64").startswith("501 5.5.2")
    assert s.cmd("NOOP").startswith("250") and not s.disconnected


def test_auth_twice_is_503(tmp_path):
    s = session(tmp_path)
    s.login()
    assert s.login().startswith("503 5.5.1")


def test_mail_auth_parameter_is_accepted(tmp_path):
    s = session(tmp_path)
    assert s.cmd("MAIL FROM:<x@remote.net> AUTH=<>").startswith("250")


def test_auth_offered_to_authorized_network_which_may_still_relay_without_it(tmp_path):
    s = FakeSession(tmp_path, peer="192.0.2.7")
    assert any("AUTH PLAIN LOGIN" in r for r in s.ehlo())
    assert s.cmd("MAIL FROM:<x@remote.net>").startswith("250")
    assert s.cmd("RCPT TO:<far@remote.example>").startswith("250")
    s.cmd("RSET")
    assert s.login().startswith("235 2.7.0")


def test_auth_offered_to_authorized_network_after_starttls(tmp_path):
    s = FakeSession(tmp_path, peer="192.0.2.7", tls_context=object(), require_ssl=True)
    s.ehlo()
    assert s.cmd("STARTTLS").startswith("220")
    assert any("AUTH PLAIN LOGIN" in r for r in s.ehlo())
    assert s.login().startswith("235 2.7.0")


def test_auth_before_ehlo_is_503_like_mail(tmp_path):
    s = FakeSession(tmp_path)
    assert s.login().startswith("503 5.5.1")
    assert s.cmd("HELO client.example.net").startswith("250")
    assert s.login().startswith("503 5.5.1")           # AUTH is an EHLO extension
    assert s.backend.auth_calls == []
    s.ehlo()
    assert s.login().startswith("235 2.7.0")


def test_throttled_auth_answers_454_not_535(tmp_path):
    from mailet_mta.smtp.backend import AuthThrottled

    s = session(tmp_path)
    s.backend.authenticate = lambda *a: defer.fail(AuthThrottled("203.0.113.5"))
    assert s.login() == ("454 4.7.0 Too many authentication attempts from your "
                         "address; try again later")
    assert s.cmd("NOOP").startswith("250")             # the session goes on


def test_auth_announce_offers_auth_to_authorized_network(tmp_path):
    s = FakeSession(tmp_path, peer="192.0.2.7", auth_required="announce")
    assert any("AUTH PLAIN LOGIN" in r for r in s.ehlo())


def test_auth_false_never_offers_auth(tmp_path):
    s = FakeSession(tmp_path, auth_required="false")
    assert not any("AUTH" in r for r in s.ehlo())


def test_require_ssl_hides_auth_before_tls(tmp_path):
    s = FakeSession(tmp_path, require_ssl=True, tls_context=object())
    replies = s.ehlo()
    assert "250-STARTTLS" in replies and not any("AUTH" in r for r in replies)


def test_smtputf8_address_needs_the_parameter(tmp_path):
    s = session(tmp_path)
    s.backend.addresses["j\u00f6rg@example.com"] = "jorg"
    assert s.cmd("MAIL FROM:<j\u00f6rg@remote.net>").startswith("553 5.6.7")
    assert s.cmd("MAIL FROM:<j\u00f6rg@remote.net> SMTPUTF8").startswith("250")
    assert s.cmd("RCPT TO:<j\u00f6rg@example.com>").startswith("250")
    s.send(b"DATA\r\nhi\r\n.\r\n")
    assert s.backend.accepted[0][0].get_attribute(ATTR_SMTPUTF8) is True


def test_utf8_recipient_without_smtputf8_is_553(tmp_path):
    s = session(tmp_path)
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<j\u00f6rg@example.com>").startswith("553 5.6.7")


def test_bdat_chunks_are_binary_safe(tmp_path):
    s = session(tmp_path)
    s.send(TX)
    body1, body2 = b"Subject: b\r\n\r\n.\r\n\0", b"\r\n.\r\nend\r\n"
    assert s.send(b"BDAT %d\r\n" % len(body1) + body1) == [f"250 2.0.0 {len(body1)} "
                                                           "octets received"]
    replies = s.send(b"BDAT %d LAST\r\n" % len(body2) + body2 + b"NOOP\r\n")
    assert replies[0].startswith("250 2.0.0 Ok: queued") and replies[1] == "250 2.0.0 Ok"
    assert s.backend.message_bytes().endswith(body1 + body2)


def test_bdat_zero_last_ends_the_message(tmp_path):
    s = session(tmp_path)
    s.send(TX + b"BDAT 3\r\nabc")
    assert s.cmd("BDAT 0 LAST").startswith("250 2.0.0 Ok: queued")
    assert s.backend.message_bytes().endswith(b"\r\nabc")


def test_bdat_then_data_is_refused(tmp_path):
    s = session(tmp_path)
    s.send(TX + b"BDAT 3\r\nabc")
    assert s.cmd("DATA").startswith("503 5.5.1")


def test_bdat_without_transaction_is_read_and_refused(tmp_path):
    s = session(tmp_path)
    assert s.codes(b"BDAT 10 LAST\r\nRCPT TO:<>NOOP\r\n") == [503, 250]


def test_bdat_over_size_limit_is_552_and_in_sync(tmp_path):
    s = session(tmp_path, max_message_size=10)
    s.send(TX)
    assert s.codes(b"BDAT 20 LAST\r\n" + b"x" * 20 + b"NOOP\r\n") == [552, 250]
    assert s.backend.accepted == []


def test_bdat_malformed_size_closes_the_session(tmp_path):
    s = session(tmp_path)
    s.send(TX)
    assert s.cmd("BDAT ten").startswith("501 5.5.4") and s.disconnected


def test_dsn_parameters_are_kept_as_attributes(tmp_path):
    s = session(tmp_path)
    s.send(b"MAIL FROM:<x@remote.net> RET=HDRS ENVID=abc+2Bdef\r\n"
           b"RCPT TO:<alice@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b.c\r\n"
           b"DATA\r\nhi\r\n.\r\n")
    mail, _ = s.backend.accepted[0]
    assert mail.get_attribute(ATTR_DSN_RET) == "HDRS"
    assert mail.get_attribute(ATTR_DSN_ENVID) == "abc+def"
    assert mail.get_attribute(ATTR_DSN_RCPT) == {
        "alice@example.com": {"notify": ["SUCCESS", "FAILURE"], "orcpt": "rfc822;a@b.c"}}


def test_bad_notify_is_501(tmp_path):
    s = session(tmp_path)
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<alice@example.com> NOTIFY=NEVER,SUCCESS").startswith("501")


def test_mail_attributes_and_received_header(tmp_path):
    s = FakeSession(tmp_path)
    s.ehlo("client.example.net")
    s.login()
    s.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
           b"Subject: t\r\n\r\nbody\r\n.\r\n")
    mail, ref = s.backend.accepted[0]
    assert mail.attributes[ATTR_AUTH_USER] == "alice" and mail.auth_user == "alice"
    assert mail.attributes[ATTR_HELO] == "client.example.net" == mail.helo
    assert mail.attributes[ATTR_REMOTE_ADDR] == "203.0.113.5" == mail.remote_addr
    assert mail.attributes[ATTR_TLS] is False and mail.attributes[ATTR_AUTH_NETWORK] is False
    data = mail.message_bytes()
    assert data.startswith(b"Received: from client.example.net ([203.0.113.5])\r\n"
                           b"\tby mx.example.com with ESMTPA id " + mail.name.encode())
    assert b"\tfor <bob@example.com>; " in data and data.endswith(b"\r\nSubject: t\r\n\r\nbody\r\n")
    assert ref.id == mail.source.blob_id and ref.size == len(data)


def test_helo_session_is_plain_smtp_in_received(tmp_path):
    s = FakeSession(tmp_path)
    s.cmd("HELO old.example.net")
    s.send(TX + b"DATA\r\nx\r\n.\r\n")
    assert b" with SMTP id " in s.backend.message_bytes()


@pytest_twisted.ensureDeferred
async def test_large_message_spills_to_a_blob_file(tmp_path):
    s = session(tmp_path)
    s.send(TX + b"DATA\r\n")
    s.send((b"y" * 998 + b"\r\n") * 20 + b".\r\n")
    for _ in range(200):
        if s.backend.accepted:
            break
        await deferLater(reactor, 0.01)
    mail, ref = s.backend.accepted[0]
    assert ref.data is None and mail.size == ref.size
    assert s.backend.blobs.path_for(ref.id).read_bytes() == mail.message_bytes()


@pytest.mark.parametrize("size", [20000, HELD_PER_WRITER + 20000])
def test_connection_lost_mid_data_leaves_no_mail_and_no_file(tmp_path, size):
    s = session(tmp_path)
    s.send(TX + b"DATA\r\n" + b"z" * size)
    # Held in memory while it fits the writer's bound, else spilled to a file.
    assert (s.backend.leftover_files() != []) == (size > HELD_PER_WRITER)
    held = s.backend.blobs.held       # the body so far and the Received: header
    assert held == 0 if size > HELD_PER_WRITER else size - 10 < held < size + 1000
    s.proto.connectionLost(None)
    assert s.backend.accepted == [] and s.backend.leftover_files() == []
    assert s.backend.blobs.held == 0


def test_ipv6_client_received_header_uses_ipv6_literal(tmp_path):
    s = FakeSession(tmp_path, peer="2001:db8::5")
    s.ehlo()
    s.send(TX + b"DATA\r\nx\r\n.\r\n")
    assert b"([IPv6:2001:db8::5])" in s.backend.message_bytes()


def test_test_backend_provides_the_backend_interface(tmp_path):
    from zope.interface.verify import verifyObject

    from mailet_mta.smtp.backend import ISMTPBackend
    from tests.support.smtp_backend import RecordingBackend
    assert verifyObject(ISMTPBackend, RecordingBackend(tmp_path))


def test_bad_listen_string_names_the_key_and_the_fix(tmp_path):
    import pytest

    from mailet_mta.api import ConfigurationError
    from mailet_mta.smtp import make_smtp_service
    from tests.support.smtp_backend import RecordingBackend, smtp_config
    svc = make_smtp_service(smtp_config(listen="nonsense:25"), RecordingBackend(tmp_path))
    with pytest.raises(ConfigurationError, match="listen 'nonsense:25'.*tcp:25"):
        svc.startService()
