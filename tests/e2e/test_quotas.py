"""Quotas during the SMTP session (RFC 3463 5.2.2), against a real ``mailet-mta``.

dora@example.com has a 100-octet quota: every message is too big for her mailbox.
The client connects from 127.0.0.1 (in ``authorizedAddresses``) as alice, so a
delivery report comes back to a mailbox the test can read.
"""

from __future__ import annotations

import email
import smtplib
import sqlite3

import pytest

from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

PASSWORD = "quota-test-pw-1"
BODY = b"Subject: %s\r\nFrom: alice@example.com\r\n\r\n" + b"x" * 2000 + b"\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("quotas")
    srv = ServerProcess(root, base_config(root / "var"))
    for user in ("alice@example.com", "carol@example.com", "dora@example.com"):
        srv.add_user(user, PASSWORD)
    srv.admin("users", "quota", "dora@example.com", "100")
    srv.admin("aliases", "add", "team@example.com", "carol@example.com", "dora@example.com")
    srv.start()
    yield srv
    srv.stop()


def pop3(srv, user: str) -> list[bytes]:
    return pop3_messages(srv, user, PASSWORD)


def spooled(srv) -> int:
    with sqlite3.connect(srv.data_dir / "mailet-mta.sqlite3", timeout=30) as db:
        return db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]


def test_rcpt_with_declared_size_over_quota_is_552_5_2_2(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.ehlo("client.example")
        assert s.mail("alice@example.com", ["SIZE=5000"])[0] == 250
        code, text = s.rcpt("dora@example.com")
        assert (code, text[:5]) == (552, b"5.2.2")
        assert s.rcpt("carol@example.com")[0] == 250       # others are not affected


def test_end_of_data_over_quota_is_552_5_2_2_and_nothing_is_kept(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.ehlo("client.example")
        assert s.mail("alice@example.com")[0] == 250        # no SIZE=: RCPT cannot know
        assert s.rcpt("dora@example.com")[0] == 250
        code, text = s.data(BODY % b"too big")
        assert (code, text[:5]) == (552, b"5.2.2")
    assert spooled(server) == 0
    assert pop3(server, "dora@example.com") == []


def test_mailbox_that_refuses_an_accepted_mail_gets_the_sender_a_report(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.sendmail("alice@example.com", ["team@example.com"], BODY % b"for the team")
    got = wait_for(lambda: pop3(server, "carol@example.com"), what="carol's copy")
    assert email.message_from_bytes(got[0])["Subject"] == "for the team"
    reports = wait_for(lambda: pop3(server, "alice@example.com"), what="the report")
    report = email.message_from_bytes(reports[0])
    assert report.get_content_type() == "multipart/report"
    status = next(p for p in report.walk()
                  if p.get_content_type() == "message/delivery-status").as_string()
    assert "dora@example.com" in status and "5.2.2" in status
    assert pop3(server, "dora@example.com") == []
