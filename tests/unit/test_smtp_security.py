"""Regressions for the defects of twisted.mail.smtp.ESMTP (research notes §1–2) and
the SMTP security rules: STARTTLS injection and reset, smuggling, long lines, AUTH."""

from __future__ import annotations

import tracemalloc

import pytest

from tests.support.smtp_backend import FakeSession, RecordingBackend

TX = b"MAIL FROM:<x@remote.net>\r\nRCPT TO:<alice@example.com>\r\n"


def session(tmp_path, **kw):
    s = FakeSession(tmp_path, **kw)
    s.ehlo()
    return s


# -- STARTTLS -------------------------------------------------------------------------
def test_starttls_discards_commands_pipelined_after_it(tmp_path):
    s = session(tmp_path, tls_context=object())
    replies = s.send(b"STARTTLS\r\nMAIL FROM:<x@remote.net>\r\nRCPT TO:<alice@example.com>\r\n")
    assert replies == ["220 2.0.0 Ready to start TLS"]
    assert s.transport.tls_context is not None and s.proto.envelope is None
    assert s.cmd("RCPT TO:<alice@example.com>").startswith("503")


def test_starttls_forgets_helo_auth_and_transaction(tmp_path):
    s = session(tmp_path, tls_context=object())
    s.login()
    s.cmd("MAIL FROM:<alice@example.com>")
    s.cmd("STARTTLS")
    sess = s.proto.session
    assert (sess.helo, sess.auth_user, s.proto.envelope, sess.tls) == (None, None, None, True)
    assert s.cmd("MAIL FROM:<x@remote.net>").startswith("503 5.5.1")  # EHLO needed again
    replies = s.ehlo()
    assert "250-STARTTLS" not in replies and s.cmd("STARTTLS").startswith("503")


def test_tls_session_is_marked_in_attributes_and_received(tmp_path):
    s = session(tmp_path, tls_context=object())
    s.cmd("STARTTLS")
    s.ehlo()
    s.send(TX + b"DATA\r\nx\r\n.\r\n")
    mail, _ = s.backend.accepted[0]
    assert mail.attributes["mailet_mta.smtp.tls"] is True
    assert b" with ESMTPS id " in mail.message_bytes()


def test_require_ssl_refuses_auth_before_tls_even_from_authorized_network(tmp_path):
    s = session(tmp_path, peer="192.0.2.9", auth_required="announce", require_ssl=True,
                tls_context=object())
    assert s.login().startswith("538 5.7.11")
    s.cmd("STARTTLS")
    s.ehlo()
    assert s.login().startswith("235")


# -- DATA framing --------------------------------------------------------------------
def test_long_line_in_data_does_not_drop_back_to_command_mode(tmp_path):
    s = session(tmp_path, backend=RecordingBackend(tmp_path / "b", inline_limit=10**6))
    s.send(TX + b"DATA\r\n")
    assert s.send(b"A" * 50_000 + b"\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<bob@example.com>\r\n"
                  b"DATA\r\nforged\r\n") == []
    assert s.codes(b".\r\n") == [250]
    assert len(s.backend.accepted) == 1
    assert b"RCPT TO:<bob@example.com>" in s.backend.message_bytes()


@pytest.mark.parametrize("seq", [b"\n.\n", b"\n.\r\n", b"\r.\n", b"\r.\r\n", b"\r\n.\r"])
def test_smtp_smuggling_sequence_is_rejected_with_550_5_6_11(tmp_path, seq):
    s = session(tmp_path)
    s.send(TX + b"DATA\r\n")
    smuggled = (b"Subject: a\r\n\r\nhello" + seq + b"MAIL FROM:<admin@example.com>\r\n"
                b"RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: forged\r\n\r\nx\r\n.\r\n")
    assert s.send(smuggled) == ["550 5.6.11 Message contains bare CR or LF; use CRLF "
                                "line ends"]
    assert s.backend.accepted == [] and s.proto.envelope is None


def test_bare_lf_only_message_is_refused(tmp_path):
    s = session(tmp_path)
    s.send(TX + b"DATA\r\n")
    assert s.codes(b"Subject: a\n\nbody\n.\r\n") == []  # "\n.\r\n" is not the end
    assert s.codes(b"\r\n.\r\n") == [550]


# -- line length and buffering -------------------------------------------------------
def test_command_line_too_long_is_500_and_session_continues(tmp_path):
    s = session(tmp_path)
    assert s.send(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n") == ["500 5.5.2 Line too long",
                                                                "250 2.0.0 Ok"]


def test_input_without_crlf_does_not_grow_memory(tmp_path):
    s = session(tmp_path)
    chunk = b"x" * 65536
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(160):  # 10 MiB without a line end
        s.proto.dataReceived(chunk)
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 1_000_000 and len(s.proto._buf) == 0
    assert s.take() == ["500 5.5.2 Line too long"]
    assert s.send(b"\r\nNOOP\r\n") == ["250 2.0.0 Ok"]


def test_over_long_line_reported_once(tmp_path):
    s = session(tmp_path)
    replies = []
    for _ in range(10):
        replies += s.send(b"y" * 4096)
    assert replies == ["500 5.5.2 Line too long"]


# -- AUTH robustness -----------------------------------------------------------------
def test_bare_auth_does_not_kill_the_connection(tmp_path):
    s = session(tmp_path)
    assert s.cmd("AUTH").startswith("501 5.5.4") and not s.disconnected


def test_malformed_plain_response_does_not_kill_the_connection(tmp_path):
    s = session(tmp_path)
    assert s.cmd("AUTH PLAIN Zm9v").startswith("501 5.5.2")  # "foo": no NULs
    assert s.cmd("NOOP").startswith("250") and not s.disconnected


def test_auth_inside_transaction_is_503(tmp_path):
    s = session(tmp_path)
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.login().startswith("503 5.5.1")


# -- failures and pipelining ---------------------------------------------------------
def test_spool_failure_answers_451_not_550(tmp_path):
    s = session(tmp_path)
    s.backend.accept_error = OSError("fsync failed")
    s.send(TX + b"DATA\r\n")
    assert s.codes(b"x\r\n.\r\n") == [451]


def test_pipelining_order_with_slow_auth(tmp_path):
    import base64

    from twisted.internet import defer
    s = session(tmp_path)
    gate = s.backend.auth_deferred = defer.Deferred()
    tok = base64.b64encode(b"\0alice\0secret")
    assert s.send(b"AUTH PLAIN " + tok + b"\r\nMAIL FROM:<alice@example.com>\r\n"
                  b"RCPT TO:<x@remote.net>\r\nDATA\r\n") == []
    gate.callback(None)
    assert [int(r[:3]) for r in s.take()] == [235, 250, 250, 354]


def test_helo_required_before_mail(tmp_path):
    s = FakeSession(tmp_path)
    assert s.cmd("MAIL FROM:<x@remote.net>").startswith("503 5.5.1")
    s2 = FakeSession(tmp_path / "2", helo_required=False)
    assert s2.cmd("MAIL FROM:<x@remote.net>").startswith("250")


def test_timeout_mid_data_aborts_the_blob(tmp_path):
    s = session(tmp_path, connection_timeout=10)
    s.send(TX + b"DATA\r\n" + b"q" * 20000)
    s.clock.advance(11)
    assert s.take()[-1].startswith("421 4.4.2") and s.disconnected
    s.proto.connectionLost(None)
    assert s.backend.leftover_files() == [] and s.backend.accepted == []


def test_a_failing_backend_call_costs_one_451_not_the_session(tmp_path):
    s = session(tmp_path)
    s.login()

    def broken(user):
        raise RuntimeError("directory down")
    s.backend.identities_of = broken
    assert s.cmd("MAIL FROM:<alice@example.com>").startswith("451 4.3.0")
    assert s.cmd("NOOP").startswith("250") and not s.disconnected


def test_max_recipients_zero_means_unlimited(tmp_path):
    s = session(tmp_path, max_recipients=0)
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.codes(b"RCPT TO:<alice@example.com>\r\n" * 3) == [250, 250, 250]


# -- header block limit and BDAT line ends ----------------------------------------------
def test_header_block_over_max_header_size_is_552_and_the_session_goes_on(tmp_path):
    s = session(tmp_path, max_header_size=1000,
                backend=RecordingBackend(tmp_path / "b", inline_limit=10**6))
    s.send(TX + b"DATA\r\n")
    endless = b"X-Filler: " + b"a" * 60 + b"\r\n"
    assert s.send(endless * 100 + b"body?\r\n.\r\n") == [
        "552 5.3.4 Message header block exceeds the maximum of 1000 octets (maxHeaderSize)"]
    assert s.backend.accepted == [] and s.proto.envelope is None
    s.send(TX + b"DATA\r\n")
    assert s.codes(endless * 10 + b"\r\nbody\r\n" + endless * 100 + b".\r\n") == [250]


def test_header_block_over_max_header_size_in_bdat_is_552(tmp_path):
    s = session(tmp_path, max_header_size=1000)
    s.send(TX)
    chunk = b"X-Filler: " + b"a" * 60 + b"\r\n"
    assert s.codes(b"BDAT %d\r\n" % (len(chunk) * 10) + chunk * 10) == [250]
    assert s.codes(b"BDAT %d LAST\r\n" % (len(chunk) * 10) + chunk * 10 + b"NOOP\r\n") \
        == [552, 250]
    assert s.backend.accepted == []


@pytest.mark.parametrize("chunks", [
    [b"Subject: a\r\n\r\nhello\n.\nMAIL FROM:<admin@example.com>\r\n"],
    [b"Subject: a\r\n\r\nhello\r.\r\n"],
    [b"Subject: a\r\n\r\nhello\r", b"x\r\n"],
    [b"Subject: a\r\n\r\nhello", b"\n.\r\n"],
    [b"Subject: a\r\n\r\nhello\r"],
])
def test_bdat_chunk_with_bare_cr_or_lf_is_550_5_6_11(tmp_path, chunks):
    s = session(tmp_path)
    s.send(TX)
    replies = []
    for i, chunk in enumerate(chunks):
        last = b" LAST" if i == len(chunks) - 1 else b""
        replies += s.send(b"BDAT %d%s\r\n" % (len(chunk), last) + chunk)
    assert replies[-1] == "550 5.6.11 Message contains bare CR or LF; use CRLF line ends"
    assert s.backend.accepted == [] and s.proto.envelope is None
    assert s.cmd("NOOP") == "250 2.0.0 Ok"

