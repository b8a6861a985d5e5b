"""DSNBounce, Bounce and the remote-delivery error matchers (public API only)."""

from __future__ import annotations

import email
import email.policy

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import Logger

from mailet_mta.api import (
    ATTR_DSN_ENVID,
    ATTR_DSN_RCPT,
    ATTR_DSN_RET,
    ATTR_SENT_BY_MAILET,
    ConfigurationError,
    MailAddress,
    MailetConfig,
    MatcherConfig,
)
from mailet_mta.mail import Mail
from mailets.mailets.bounce import Bounce
from mailets.mailets.dsn_bounce import DSNBounce
from mailets.matchers.remote_delivery_errors import (
    IsRemoteDeliveryPermanentError,
    IsRemoteDeliveryTemporaryError,
)

ORIGINAL = (b"From: alice@origin.test\r\nTo: bob@example.com\r\nSubject: Lunch\r\n"
            b"Message-ID: <lunch@origin.test>\r\n\r\nSee you at noon.\r\n")
ERRORS = {
    "bob@example.com": {"code": 550, "permanent": True,
                        "text": "mx.example.com [192.0.2.5] said: 550 5.1.1 no such user"},
    "carol@example.com": {"code": 451, "permanent": False,
                          "text": "mx.example.com [192.0.2.5] said: 451 4.3.0 try later"},
}


class Context:
    postmaster = MailAddress.parse("postmaster@relay.test")
    server_name = "relay.test"
    log = Logger()

    def __init__(self):
        self.sent = []

    def send_mail(self, mail, state="root", delay=0):
        self.sent.append((mail, state))
        return defer.succeed(None)

    def run_in_worker(self, fn, *args):
        return defer.maybeDeferred(fn, *args)


def failed_mail(sender="alice@origin.test", **attributes):
    attrs = {"mailet_mta.delivery.error": ERRORS, "mailet_mta.delivery.arrival": 1.7e9}
    attrs.update(attributes)
    return Mail(sender=MailAddress.parse(sender) if sender else None,
                recipients=[MailAddress.parse(a) for a in ERRORS], message=ORIGINAL,
                state="bounces", attributes=attrs)


def init(cls, **params):
    ctx = Context()
    m = cls()
    m.init(MailetConfig(cls.__name__, context=ctx, parameters=params))
    return m, ctx


def parse(mail):
    return email.message_from_bytes(mail.message_bytes(), policy=email.policy.default)


def status_blocks(report):
    part = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"][0]
    return part.get_payload()


@pytest_twisted.ensureDeferred
async def test_dsn_is_a_valid_multipart_report_to_the_sender_from_the_null_sender():
    m, ctx = init(DSNBounce)
    mail = failed_mail(**{ATTR_DSN_ENVID: "QQ314159"})
    await m.service(mail)
    (dsn, state), = ctx.sent
    assert state == "root" and dsn.sender is None
    assert [str(r) for r in dsn.recipients] == ["alice@origin.test"]
    assert dsn.get_attribute(ATTR_SENT_BY_MAILET) is True
    report = parse(dsn)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    kinds = [p.get_content_type() for p in report.iter_parts()]
    assert kinds == ["text/plain", "message/delivery-status", "message/rfc822"]
    per_message, bob, carol = status_blocks(report)
    assert per_message["Reporting-MTA"] == "dns; relay.test"
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert "2023" in per_message["Arrival-Date"]
    assert bob["Final-Recipient"] == "rfc822; bob@example.com"
    assert bob["Action"] == "failed" and bob["Status"] == "5.1.1"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert carol["Status"] == "4.3.0"
    original = list(report.iter_parts())[2].get_payload()[0]
    assert original["Subject"] == "Lunch"
    assert report["In-Reply-To"] == "<lunch@origin.test>"


@pytest_twisted.ensureDeferred
async def test_dsn_with_ret_hdrs_carries_only_the_header():
    m, ctx = init(DSNBounce)
    await m.service(failed_mail(**{ATTR_DSN_RET: "HDRS"}))
    report = parse(ctx.sent[0][0])
    last = list(report.iter_parts())[2]
    assert last.get_content_type() == "text/rfc822-headers"
    assert "Subject: Lunch" in last.get_content()
    assert "See you at noon" not in ctx.sent[0][0].message_bytes().decode()


@pytest_twisted.ensureDeferred
async def test_dsn_honours_notify_never_and_orcpt():
    m, ctx = init(DSNBounce)
    await m.service(failed_mail(**{ATTR_DSN_RCPT: {
        "bob@example.com": {"notify": ["NEVER"]},
        "carol@example.com": {"notify": ["FAILURE"], "orcpt": "rfc822;carol@alias.test"}}}))
    _per_message, *recipients = status_blocks(parse(ctx.sent[0][0]))
    assert [r["Final-Recipient"] for r in recipients] == ["rfc822; carol@example.com"]
    assert recipients[0]["Original-Recipient"] == "rfc822;carol@alias.test"


@pytest_twisted.ensureDeferred
async def test_dsn_not_sent_when_every_recipient_asked_for_success_only():
    m, ctx = init(DSNBounce)
    await m.service(failed_mail(**{ATTR_DSN_RCPT: {
        a: {"notify": ["SUCCESS"]} for a in ERRORS}}))
    assert ctx.sent == []


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("cls", [DSNBounce, Bounce])
async def test_mail_from_the_null_sender_is_never_bounced(cls):
    m, ctx = init(cls, passThrough="false")
    mail = failed_mail(sender=None)
    await m.service(mail)
    assert ctx.sent == []
    assert mail.state == "ghost"


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("cls", [DSNBounce, Bounce])
async def test_notice_mailets_pass_the_mail_through_by_default_as_james_does(cls):
    m, ctx = init(cls)
    mail = failed_mail()
    await m.service(mail)
    assert mail.state == "bounces" and len(ctx.sent) == 1
    m, ctx = init(cls, passThrough="false")
    mail = failed_mail()
    await m.service(mail)
    assert mail.state == "ghost" and len(ctx.sent) == 1


@pytest_twisted.ensureDeferred
async def test_dsn_without_delivery_errors_reports_the_error_message():
    m, ctx = init(DSNBounce)
    mail = Mail(sender=MailAddress.parse("alice@origin.test"),
                recipients=[MailAddress.parse("x@far.test")], message=ORIGINAL,
                error_message="550 relaying denied")
    await m.service(mail)
    _pm, block = status_blocks(parse(ctx.sent[0][0]))
    assert block["Status"] == "5.0.0" and block["Action"] == "failed"


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("attachment,kind", [("message", "message/rfc822"),
                                             ("heads", "text/rfc822-headers"),
                                             ("none", None)])
async def test_bounce_notice_attaches_as_configured(attachment, kind):
    m, ctx = init(Bounce, attachment=attachment, notice="Could not deliver.")
    mail = failed_mail()
    mail.error_message = "bob@example.com: 550 no such user"
    await m.service(mail)
    (notice, state), = ctx.sent
    assert notice.sender is None and str(notice.recipients[0]) == "alice@origin.test"
    msg = parse(notice)
    text = msg.get_body(("plain",)).get_content()
    assert "Could not deliver." in text and "550 no such user" in text
    kinds = [p.get_content_type() for p in msg.iter_attachments()]
    assert kinds == ([kind] if kind else [])


def test_bounce_refuses_an_unknown_attachment_kind():
    with pytest.raises(ConfigurationError):
        init(Bounce, attachment="sometimes")


def test_error_matchers_split_permanent_from_temporary_recipients():
    mail = failed_mail()
    perm, temp = IsRemoteDeliveryPermanentError(), IsRemoteDeliveryTemporaryError()
    perm.init(MatcherConfig("IsRemoteDeliveryPermanentError"))
    temp.init(MatcherConfig("IsRemoteDeliveryTemporaryError"))
    assert [str(r) for r in perm.match(mail)] == ["bob@example.com"]
    assert [str(r) for r in temp.match(mail)] == ["carol@example.com"]
    mail.attributes.clear()
    assert perm.match(mail) == [] and temp.match(mail) == []
