"""One test per reply code the server produces (see mailet_mta.smtp.replies)."""

from __future__ import annotations

import base64

from twisted.internet import defer

from mailet_mta.address import MailAddress
from tests.support.smtp_backend import FakeSession

TX = b"MAIL FROM:<x@remote.net>\r\nRCPT TO:<alice@example.com>\r\n"


def session(tmp_path, **kw):
    s = FakeSession(tmp_path, **kw)
    s.ehlo()
    return s


def test_214_help_lists_commands(tmp_path):
    s = session(tmp_path)
    replies = s.send(b"HELP\r\n")
    assert replies[-1].startswith("214 2.0.0") and any("MAIL" in r for r in replies)
    assert s.cmd("HELP mail").startswith("214 2.0.0 MAIL FROM:")
    # An argument of only characters str.split() counts as blanks is no topic at all.
    replies = s.send(b"HELP \x1f\x1c\r\n")
    assert replies[-1].startswith("214 2.0.0") and any("MAIL" in r for r in replies)
    assert s.cmd("HELP nosuchtopic").startswith("504 5.5.4")


def test_220_greeting_names_the_server(tmp_path):
    s = FakeSession(tmp_path, greeting="ESMTP ready")
    assert s.greeting == ["220 mx.example.com ESMTP ready"]


def test_220_greeting_uses_helo_name_when_set(tmp_path):
    assert FakeSession(tmp_path, helo_name="smtp.example.com").greeting[0].startswith(
        "220 smtp.example.com ")


def test_221_quit_says_bye_and_closes(tmp_path):
    s = session(tmp_path)
    assert s.cmd("QUIT") == "221 2.0.0 Bye" and s.disconnected


def test_250_for_each_step_of_a_transaction(tmp_path):
    s = session(tmp_path)
    assert s.codes(TX + b"DATA\r\n") == [250, 250, 354]
    assert s.codes(b"hi\r\n.\r\n") == [250]


def test_251_rcpt_of_a_forwarded_user_is_accepted(tmp_path):
    s = session(tmp_path)
    s.backend.addresses["old@example.com"] = "alice"
    s.backend.redirects["old@example.com"] = ("forward", MailAddress.parse("new@far.net"))
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<old@example.com>").startswith("251 2.1.5 User not local")
    assert s.proto.envelope.recipients == [MailAddress.parse("old@example.com")]


def test_354_data_asks_for_the_body(tmp_path):
    s = session(tmp_path)
    assert s.send(TX + b"DATA\r\n")[-1].startswith("354 ")


def test_421_idle_timeout_closes(tmp_path):
    s = session(tmp_path, connection_timeout=30)
    s.clock.advance(31)
    assert s.take() == ["421 4.4.2 mx.example.com Error: timeout exceeded"]
    assert s.disconnected


def test_421_too_many_connections_from_one_ip(tmp_path):
    s = FakeSession(tmp_path, connection_limit_per_ip=1)
    p = s.factory.buildProtocol(s.peer)
    from twisted.internet.testing import StringTransport
    t = StringTransport(peerAddress=s.peer)
    p.makeConnection(t)
    assert t.value().startswith(b"421 4.7.0 ") and t.disconnecting


def test_421_too_many_connections_in_total(tmp_path):
    s = FakeSession(tmp_path, connection_limit=1)
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    other = IPv4Address("TCP", "203.0.113.99", 1)
    t = StringTransport(peerAddress=other)
    s.factory.buildProtocol(other).makeConnection(t)
    assert t.value().startswith(b"421 4.7.0 ") and t.disconnecting


def test_421_shutdown_at_next_command_boundary(tmp_path):
    s = session(tmp_path)
    s.proto.shutdown()
    assert s.take() == ["421 4.3.2 mx.example.com Service shutting down"]
    assert s.disconnected


def test_450_rcpt_when_lookup_fails(tmp_path):
    s = session(tmp_path)
    s.backend.broken_lookup = True
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<alice@example.com>").startswith("450 4.3.0 ")


def test_450_rcpt_when_mailbox_store_unavailable(tmp_path):
    s = session(tmp_path)
    s.backend.addresses["flaky@example.com"] = "flaky"
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<flaky@example.com>").startswith("450 4.2.1 ")


def test_451_when_spool_refuses_the_mail_never_250(tmp_path):
    s = session(tmp_path)
    s.backend.accept_error = RuntimeError("disk full")
    s.send(TX + b"DATA\r\n")
    assert s.send(b"hi\r\n.\r\n") == ["451 4.3.0 Error: could not queue the message, "
                                      "try again later"]


def test_452_too_many_recipients(tmp_path):
    s = session(tmp_path, max_recipients=2)
    s.cmd("MAIL FROM:<x@remote.net>")
    s.cmd("RCPT TO:<alice@example.com>")
    s.cmd("RCPT TO:<bob@example.com>")
    assert s.cmd("RCPT TO:<info@example.com>").startswith("452 4.5.3 ")


def test_452_counts_rcpt_commands_not_distinct_addresses(tmp_path):
    s = session(tmp_path, max_recipients=100)
    s.cmd("MAIL FROM:<x@remote.net>")
    rcpts = b"".join(b"RCPT TO:<%s@example.com>\r\n" % (b"alice", b"bob")[i % 2]
                     for i in range(105))
    codes = s.codes(rcpts)
    assert codes == [250] * 100 + [452] * 5


def test_refused_rcpt_does_not_use_up_the_recipient_limit(tmp_path):
    s = session(tmp_path, max_recipients=2)
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<nobody@example.com>").startswith("550")
    assert s.cmd("RCPT TO:<alice@example.com>").startswith("250")
    assert s.cmd("RCPT TO:<alice@example.com>").startswith("250")
    assert s.cmd("RCPT TO:<bob@example.com>").startswith("452 4.5.3 ")


def test_mail_parameter_repeated_with_the_same_value_is_accepted(tmp_path):
    s = session(tmp_path)
    assert s.cmd("MAIL FROM:<a@remote.net> size=1000 SIZE=1000").startswith("250")
    s.cmd("RSET")
    assert s.cmd("MAIL FROM:<a@remote.net> SIZE=1000 SIZE=2000") == \
        "501 5.5.4 parameter SIZE given twice with different values"


def test_454_starttls_without_certificate(tmp_path):
    s = session(tmp_path)
    assert s.cmd("STARTTLS").startswith("454 4.7.0 ")


def test_500_unknown_command(tmp_path):
    s = session(tmp_path)
    assert s.cmd("FOO bar") == "500 5.5.2 Error: command not recognized"


def test_501_helo_without_argument(tmp_path):
    s = FakeSession(tmp_path)
    assert s.cmd("HELO").startswith("501 5.5.4 ")


def test_501_mail_without_brackets(tmp_path):
    s = session(tmp_path)
    assert s.cmd("MAIL FROM:x@remote.net").startswith("501 5.5.4 ")


def test_502_expn_and_obsolete_commands(tmp_path):
    s = session(tmp_path)
    assert s.codes(b"EXPN staff\r\nSEND FROM:<a@b>\r\nSOML FROM:<a@b>\r\n"
                   b"SAML FROM:<a@b>\r\nTURN\r\n") == [502] * 5


def test_503_rcpt_before_mail(tmp_path):
    s = session(tmp_path)
    assert s.cmd("RCPT TO:<alice@example.com>").startswith("503 5.5.1 ")


def test_503_mail_before_helo_when_helo_required(tmp_path):
    s = FakeSession(tmp_path)
    assert s.cmd("MAIL FROM:<x@remote.net>").startswith("503 5.5.1 ")


def test_503_nested_mail(tmp_path):
    s = session(tmp_path)
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("MAIL FROM:<y@remote.net>").startswith("503 5.5.1 ")


def test_503_data_without_mail(tmp_path):
    s = session(tmp_path)
    assert s.cmd("DATA").startswith("503 5.5.1 ")


def test_504_auth_unknown_mechanism(tmp_path):
    s = session(tmp_path)
    assert s.cmd("AUTH CRAM-MD5").startswith("504 5.5.4 ")


def test_530_mail_before_auth_on_submission(tmp_path):
    s = session(tmp_path, auth_before_mail=True)
    assert s.cmd("MAIL FROM:<alice@example.com>") == "530 5.7.0 Authentication required"


def test_535_wrong_password(tmp_path):
    s = session(tmp_path)
    assert s.login("alice", "wrong").startswith("535 5.7.8 ")


def test_535_after_the_listener_failure_delay_without_blocking(tmp_path):
    s = session(tmp_path, auth_failure_delay=2.0)
    assert s.send(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0bad") + b"\r\nNOOP\r\n") == []
    s.clock.advance(1.9)
    assert s.take() == []
    s.clock.advance(0.2)
    assert [r[:3] for r in s.take()] == ["535", "250"]


def test_538_auth_before_tls_when_require_ssl(tmp_path):
    s = session(tmp_path, require_ssl=True)
    assert s.login().startswith("538 5.7.11 ")


def test_550_unknown_local_user(tmp_path):
    s = session(tmp_path)
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<nobody@example.com>").startswith("550 5.1.1 ")


def test_551_rcpt_of_a_moved_user(tmp_path):
    s = session(tmp_path)
    s.backend.redirects["alice@example.com"] = ("moved", MailAddress.parse("a@far.net"))
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<alice@example.com>") == \
        "551 5.1.6 User not local; please try <a@far.net>"


def test_552_declared_size_over_limit(tmp_path):
    s = session(tmp_path, max_message_size=1000)
    assert s.cmd("MAIL FROM:<x@remote.net> SIZE=1001").startswith("552 5.3.4 ")


def test_552_real_size_over_limit_after_the_end_and_in_sync(tmp_path):
    s = session(tmp_path, max_message_size=1000)
    s.send(TX + b"DATA\r\n")
    replies = s.send(b"x" * 3000 + b"\r\n.\r\nNOOP\r\n")
    assert replies == ["552 5.3.4 Message size exceeds fixed maximum message size",
                       "250 2.0.0 Ok"]
    assert s.backend.accepted == [] and s.backend.leftover_files() == []


def test_552_quota_at_rcpt(tmp_path):
    s = session(tmp_path)
    s.backend.full_mailboxes.add("bob@example.com")
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<bob@example.com>").startswith("552 5.2.2 ")


def test_553_malformed_recipient(tmp_path):
    s = session(tmp_path)
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd("RCPT TO:<a@b@example.com>").startswith("553 5.1.3 ")


def test_553_authenticated_sender_not_owned(tmp_path):
    s = session(tmp_path)
    assert s.login().startswith("235")
    assert s.cmd("MAIL FROM:<bob@example.com>").startswith("553 5.7.1 ")


def test_554_data_with_no_valid_recipients(tmp_path):
    s = session(tmp_path)
    s.cmd("MAIL FROM:<x@remote.net>")
    s.cmd("RCPT TO:<nobody@example.com>")
    assert s.cmd("DATA") == "554 5.5.1 Error: no valid recipients"


def test_555_unknown_mail_parameter(tmp_path):
    s = session(tmp_path)
    assert s.cmd("MAIL FROM:<x@remote.net> XFOO=1").startswith("555 5.5.4 ")


def test_334_and_235_auth_login_challenge_form(tmp_path):
    s = session(tmp_path)
    b64 = lambda t: base64.b64encode(t.encode()).decode()  # noqa: E731
    assert s.cmd("AUTH LOGIN") == "334 " + b64("Username:")
    assert s.cmd(b64("alice")) == "334 " + b64("Password:")
    assert s.cmd(b64("secret")) == "235 2.7.0 Authentication successful"


def test_211_is_not_produced_help_answers_214(tmp_path):
    s = session(tmp_path)
    assert all(not r.startswith("211") for r in s.send(b"HELP\r\n"))


def test_slow_auth_deferred_holds_later_commands(tmp_path):
    s = session(tmp_path)
    gate = defer.Deferred()
    s.backend.auth_deferred = gate
    token = base64.b64encode(b"\0alice\0secret").decode()
    assert s.send(f"AUTH PLAIN {token}\r\nMAIL FROM:<alice@example.com>\r\n".encode()) == []
    assert s.transport.producerState == "paused"
    gate.callback(None)
    assert s.take() == ["235 2.7.0 Authentication successful",
                        "250 2.1.0 Sender <alice@example.com> OK"]
    assert s.transport.producerState == "producing"
