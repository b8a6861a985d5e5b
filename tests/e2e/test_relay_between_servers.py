"""Two real mailet-mta instances: A relays to B (found through A's static MX table),
B delivers locally, and the mail is read back over POP3 on B. Bounces come back to A."""

from __future__ import annotations

import email
import smtplib

import pytest

from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

PASSWORD = "relay-pass-123"


@pytest.fixture
def pair(tmp_path):
    b = ServerProcess(tmp_path / "b", base_config(tmp_path / "b" / "var",
                                                  servernames=["example.net"]), name="b")
    b.add_user("bob@example.net", PASSWORD)
    b.start()
    a_cfg = base_config(tmp_path / "a" / "var", servernames=["example.com"])
    a_cfg["dns"] = {"hosts": {"example.net": [f"127.0.0.1:{b.port('smtp')}"]}}
    # Retry fast so the bounce test does not wait minutes.
    relay = a_cfg["spoolmanager"]["processors"]["relay"]["mailets"][0]
    relay["parameters"].update({"delayTime": "2*1 second", "maxRetries": "2"})
    a = ServerProcess(tmp_path / "a", a_cfg, name="a")
    a.add_user("alice@example.com", PASSWORD)
    a.start()
    yield a, b
    a.stop()
    b.stop()


def pop3(srv, user):
    return pop3_messages(srv, user, PASSWORD)


def test_authenticated_mail_is_relayed_to_the_other_server_and_read_there(pair):
    a, b = pair
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=10) as s:
        s.login("alice@example.com", PASSWORD)
        s.sendmail("alice@example.com", ["bob@example.net"],
                   b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: across\r\n"
                   b"\r\n.leading dot\r\nhello bob\r\n")
    got = wait_for(lambda: pop3(b, "bob@example.net"), timeout=60, what="mail on server B")
    msg = email.message_from_bytes(got[0])
    assert msg["Subject"] == "across"
    assert msg["Return-Path"] == "<alice@example.com>"
    assert len(msg.get_all("Received")) >= 2          # A's and B's trace headers
    assert b"\r\n.leading dot\r\nhello bob" in got[0]
    a.wait_log("status=sent")
    queue = a.cli("queue", "list").stdout
    assert "example.net" not in queue                  # delivered, nothing left queued


def test_unknown_recipient_on_the_other_server_bounces_back_to_the_sender(pair):
    a, b = pair
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=10) as s:
        s.login("alice@example.com", PASSWORD)
        s.sendmail("alice@example.com", ["nobody@example.net"],
                   b"From: alice@example.com\r\nSubject: lost\r\n\r\nhi\r\n")
    got = wait_for(lambda: pop3(a, "alice@example.com"), timeout=60,
                   what="the bounce in alice's mailbox")
    report = email.message_from_bytes(got[0])
    assert report.get_content_type() == "multipart/report"
    assert report["Return-Path"] == "<>"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert "nobody@example.net" in text and "5.1.1" in text
