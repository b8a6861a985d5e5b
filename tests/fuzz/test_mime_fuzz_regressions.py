"""Defects the MIME fuzzer found in the standard mailets, kept as named regressions."""

from __future__ import annotations

import email
import email.policy

from mailet_mta.api import Mail, MailAddress
from mailet_mta.testing import FakeMailContext, run
from mailets.mailets.redirect import Redirect


def test_redirect_of_a_message_with_two_subject_headers_keeps_the_first_and_does_not_raise():
    raw = b"Subject: one\r\nSubject: two\r\nFrom: a@remote.org\r\nFrom: b@remote.org\r\n\r\nhi\r\n"
    ctx = FakeMailContext(domains=["example.com"], users=["bob@example.com"])
    mail = Mail(sender=MailAddress.parse("eve@remote.org"),
                recipients=[MailAddress.parse("bob@example.com")], message=raw)
    run(ctx.mailet(Redirect, recipients="alice@other.org", prefix="[fwd]",
                   attachment="all").service(mail))
    [(copy, _, _)] = ctx.sent
    parsed = email.message_from_bytes(copy.message_bytes(), policy=email.policy.default)
    assert parsed.get_all("Subject") == ["[fwd] one"]
    assert parsed.get_all("From") == ["a@remote.org"]


def test_redirect_of_a_subject_holding_a_vertical_tab_does_not_raise():
    raw = b"Subject: a\x0bb\r\nFrom: a@remote.org\r\n\r\nhi\r\n"
    ctx = FakeMailContext(domains=["example.com"], users=["bob@example.com"])
    mail = Mail(sender=MailAddress.parse("eve@remote.org"),
                recipients=[MailAddress.parse("bob@example.com")], message=raw)
    run(ctx.mailet(Redirect, recipients="alice@other.org", prefix="[fwd]",
                   attachment="all").service(mail))
    [(copy, _, _)] = ctx.sent
    assert b"Subject: [fwd] a b" in copy.message_bytes()


def test_add_footer_leaves_a_part_the_stdlib_cannot_rebuild_unchanged():
    from mailets.mailets.add_footer import AddFooter

    raw = b"From: :;\x00\r\n\r\nhello\r\n"
    ctx = FakeMailContext(domains=["example.com"], users=["bob@example.com"])
    mail = Mail(sender=MailAddress.parse("eve@remote.org"),
                recipients=[MailAddress.parse("bob@example.com")], message=raw)
    run(ctx.mailet(AddFooter, text="FOOT").service(mail))
    assert b"hello" in mail.message_bytes()
    assert "cannot be rebuilt" in ctx.log_text()


def test_changed_message_with_undecodable_header_bytes_still_serialises():
    """A Content-Type holding a raw 0x80 byte, changed by a mailet, must still turn
    into bytes (found by the AddFooter fuzz test)."""
    from mailet_mta.mail import Mail

    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; \x80charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n")
    mail = Mail(message=raw)
    mail.message.set_param("charset", "utf-8")
    data = mail.message_bytes()
    assert isinstance(data, bytes) and b"Gr\xc3\xbc\xc3\x9fe" in data
