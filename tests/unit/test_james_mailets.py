"""The James mailets and matchers added for configurations brought from James:
AddDeliveredToHeader, AddSubjectPrefix, NotifySender, NotifyPostmaster,
UseHeaderRecipients, HasMimeType, AttachmentFileNameIs, IsSenderInRRTLoop."""

from __future__ import annotations

import email
import email.policy
import io
import zipfile
from email.message import EmailMessage

import pytest

from mailet_mta.api import (
    ATTR_AUTH_NETWORK,
    ATTR_AUTH_USER,
    ATTR_RECIPIENT_HEADERS,
    ATTR_SENT_BY_MAILET,
    ConfigurationError,
    Mail,
    MailAddress,
)
from mailet_mta.testing import FakeMailContext, run
from mailets.mailets.delivered_to import AddDeliveredToHeader
from mailets.mailets.header_recipients import MAX_HEADER_RECIPIENTS, UseHeaderRecipients
from mailets.mailets.local_delivery import _trace_headers
from mailets.mailets.notify import NotifyPostmaster, NotifySender
from mailets.mailets.subject_prefix import AddSubjectPrefix
from mailets.matchers.attachment_names import AttachmentFileNameIs
from mailets.matchers.mime_type import HasMimeType
from mailets.matchers.rrt_loop import IsSenderInRRTLoop
from mailets.mime_parts import MAX_DEPTH, MAX_PARTS, TooComplex, leaf_parts

A = MailAddress.parse
PLAIN = (b"From: Eve <eve@remote.org>\r\nTo: bob@example.com\r\nSubject: Hello\r\n"
         b"Message-ID: <1@remote.org>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n"
         b"Hi Bob,\r\n")


@pytest.fixture
def ctx():
    return FakeMailContext(domains=["example.com"],
                         users=["bob@example.com", "postmaster@example.com"])


def make_mail(message=PLAIN, recipients=("bob@example.com",), sender="eve@remote.org"):
    return Mail(sender=A(sender) if sender else None, recipients=[A(r) for r in recipients],
                message=message)


def parsed(mail) -> EmailMessage:
    return email.message_from_bytes(mail.message_bytes(), policy=email.policy.default)


def with_attachments(*names: str, zipped: dict[str, list[str]] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "eve@remote.org", "bob@example.com", "files"
    msg.set_content("see attached")
    for name in names:
        msg.add_attachment(b"data", maintype="application", subtype="octet-stream",
                           filename=name)
    for zip_name, inner in (zipped or {}).items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for entry in inner:
                archive.writestr(entry, b"x")
        msg.add_attachment(buffer.getvalue(), maintype="application", subtype="zip",
                           filename=zip_name)
    return msg.as_bytes()


# -- AddDeliveredToHeader ------------------------------------------------------------
def test_add_delivered_to_header_records_one_header_per_recipient(ctx):
    mail = make_mail(recipients=("bob@example.com", "carol@example.com"))
    mailet = ctx.mailet(AddDeliveredToHeader)
    run(mailet.service(mail))
    run(mailet.service(mail))      # twice: still one header each
    assert mail.get_attribute(ATTR_RECIPIENT_HEADERS) == {
        "bob@example.com": [["Delivered-To", "bob@example.com"]],
        "carol@example.com": [["Delivered-To", "carol@example.com"]]}
    assert b"Delivered-To" not in mail.message_bytes()   # not in the shared message
    assert _trace_headers(mail, A("bob@example.com"), "<eve@remote.org>") == [
        ("Return-Path", "<eve@remote.org>"), ("Delivered-To", "bob@example.com")]


def test_local_delivery_alone_still_writes_delivered_to():
    mail = make_mail()
    assert _trace_headers(mail, A("bob@example.com"), "<>") == [
        ("Return-Path", "<>"), ("Delivered-To", "bob@example.com")]


# -- AddSubjectPrefix ----------------------------------------------------------------
def test_add_subject_prefix_puts_the_prefix_and_a_space_before_the_subject(ctx):
    mail = make_mail()
    run(ctx.mailet(AddSubjectPrefix, subjectPrefix="[robot]").service(mail))
    assert parsed(mail)["Subject"] == "[robot] Hello"


def test_add_subject_prefix_without_subject_makes_the_prefix_the_subject(ctx):
    mail = make_mail(b"From: a@b.org\r\n\r\nbody\r\n")
    run(ctx.mailet(AddSubjectPrefix, subjectPrefix="[ML]").service(mail))
    assert parsed(mail)["Subject"] == "[ML]"


def test_add_subject_prefix_needs_its_parameter(ctx):
    with pytest.raises(ConfigurationError, match="subjectPrefix"):
        ctx.mailet(AddSubjectPrefix)


# -- NotifySender / NotifyPostmaster ------------------------------------------------
def test_notify_sender_sends_a_notice_with_the_mail_attached_from_null_sender(ctx):
    mail = make_mail()
    mail.error_message = "550 mailbox full"
    run(ctx.mailet(NotifySender, notice="Your mail was seen.", prefix="[Notice]")
        .service(mail))
    (notice, state, _), = ctx.sent
    assert notice.recipients == [A("eve@remote.org")] and notice.sender is None
    assert notice.get_attribute(ATTR_SENT_BY_MAILET) and state == "root"
    msg = parsed(notice)
    assert msg["From"] == "postmaster@example.com" and msg["Subject"] == "[Notice] Hello"
    assert msg["Auto-Submitted"] == "auto-replied" and msg["In-Reply-To"] == "<1@remote.org>"
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("Your mail was seen.") and "550 mailbox full" in text
    (attached,) = [p for p in msg.iter_attachments()]
    assert attached.get_content_type() == "message/rfc822"
    assert mail.state == "root"     # passThrough is true by default


def test_notify_sender_does_not_write_to_an_unverified_sender_of_a_refused_mail(ctx):
    """Backscatter: relay denied to a stranger whose sender may be forged."""
    mail = make_mail(recipients=("victim@elsewhere.org",), sender="forged@innocent.org")
    run(ctx.mailet(NotifySender, passThrough="false").service(mail))
    assert ctx.sent == [] and mail.state == "ghost"
    assert "no backscatter" in ctx.log_text()


@pytest.mark.parametrize("attribute", [ATTR_AUTH_USER, ATTR_AUTH_NETWORK])
def test_notify_sender_writes_to_a_sender_the_client_proved(ctx, attribute):
    mail = make_mail(recipients=("friend@elsewhere.org",), sender="bob@example.com")
    mail.set_attribute(attribute, "bob@example.com" if attribute == ATTR_AUTH_USER else True)
    run(ctx.mailet(NotifySender).service(mail))
    assert [n.recipients for n, _, _ in ctx.sent] == [[A("bob@example.com")]]


def test_notify_sender_never_answers_the_null_sender(ctx):
    run(ctx.mailet(NotifySender).service(make_mail(sender=None)))
    assert ctx.sent == []


def test_notify_postmaster_writes_to_the_postmaster_with_the_error_attached(ctx):
    mail = make_mail(recipients=("victim@elsewhere.org",), sender="forged@innocent.org")
    mail.error_message = "relay denied"
    run(ctx.mailet(NotifyPostmaster, attachError="true").service(mail))
    (notice, _, _), = ctx.sent
    assert notice.recipients == [A("postmaster@example.com")] and notice.sender is None
    msg = parsed(notice)
    assert msg["To"] == "postmaster@example.com"
    names = [p.get_filename() for p in msg.iter_attachments()]
    assert "error.txt" in names


def test_notify_parameters_are_checked(ctx):
    with pytest.raises(ConfigurationError, match="to must be one of"):
        ctx.mailet(NotifyPostmaster, to="sender")
    with pytest.raises(ConfigurationError, match="unknown parameter"):
        ctx.mailet(NotifySender, recipients="x@y.org")


# -- UseHeaderRecipients -------------------------------------------------------------
def test_use_header_recipients_takes_mail_for_first(ctx):
    mail = make_mail(b"Mail-For: carol@example.com\r\nTo: bob@example.com\r\n\r\nx\r\n",
                     recipients=("forwarded@example.com",))
    run(ctx.mailet(UseHeaderRecipients).service(mail))
    (copy, state, _), = ctx.sent
    assert copy.recipients == [A("carol@example.com")] and state == "root"
    assert mail.state == "ghost"


def test_use_header_recipients_takes_to_and_cc_and_keeps_the_relay_rules(ctx):
    """The copy is not marked as sent by a mailet: header addresses are the sender's
    words and must not pass the relay check an unauthenticated client would fail."""
    mail = make_mail(b"To: a@example.com, b@remote.org\r\nCc: a@example.com, "
                     b"c@remote.org\r\n\r\nx\r\n", recipients=("forwarded@example.com",))
    run(ctx.mailet(UseHeaderRecipients).service(mail))
    (copy, _, _), = ctx.sent
    assert copy.recipients == [A("a@example.com"), A("b@remote.org"), A("c@remote.org")]
    assert not copy.get_attribute(ATTR_SENT_BY_MAILET)


def test_use_header_recipients_takes_a_bounded_number(ctx):
    many = ", ".join(f"u{i}@example.com" for i in range(MAX_HEADER_RECIPIENTS + 50))
    mail = make_mail(f"To: {many}\r\n\r\nx\r\n".encode())
    run(ctx.mailet(UseHeaderRecipients).service(mail))
    (copy, _, _), = ctx.sent
    assert len(copy.recipients) == MAX_HEADER_RECIPIENTS


# -- HasMimeType -----------------------------------------------------------------------
@pytest.mark.parametrize("content_type,matched", [
    (b"text/html; charset=utf-8", True), (b"TEXT/PLAIN", True),
    (b"multipart/mixed; boundary=x", False), (None, True)])
def test_has_mime_type_compares_the_top_level_type(ctx, content_type, matched):
    header = b"Content-Type: " + content_type + b"\r\n" if content_type else b""
    mail = make_mail(header + b"Subject: x\r\n\r\nbody\r\n")
    matcher = ctx.matcher(HasMimeType, "text/plain, text/html")
    assert run(matcher.match(mail)) == ([A("bob@example.com")] if matched else [])


def test_has_mime_type_refuses_a_bad_condition(ctx):
    with pytest.raises(ConfigurationError):
        ctx.matcher(HasMimeType, "plain")
    with pytest.raises(ConfigurationError):
        ctx.matcher(HasMimeType, None)


# -- AttachmentFileNameIs --------------------------------------------------------------
@pytest.mark.parametrize("condition,names,matched", [
    ("*.exe, *.scr", ["report.pdf", "Setup.EXE"], True),
    ("*.exe *.scr", ["report.pdf"], False),
    ("report.pdf", ["report.pdf"], True),
    ("report.pdf", ["my-report.pdf"], False),
])
def test_attachment_file_name_is_masks(ctx, condition, names, matched):
    mail = make_mail(with_attachments(*names))
    got = run(ctx.matcher(AttachmentFileNameIs, condition).match(mail))
    assert got == ([A("bob@example.com")] if matched else [])


def test_attachment_file_name_is_looks_into_zip_files_with_dash_z(ctx):
    mail = make_mail(with_attachments(zipped={"docs.zip": ["a/readme.txt", "run.exe"]}))
    assert run(ctx.matcher(AttachmentFileNameIs, "*.exe").match(mail)) == []
    assert run(ctx.matcher(AttachmentFileNameIs, "-z *.exe").match(mail)) == \
        [A("bob@example.com")]


def test_attachment_file_name_is_matches_a_message_too_complex_to_examine(ctx):
    """Past the part bound the rest is not examined: the mail matches (fail closed)."""
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\n{i}\r\n"
                    for i in range(MAX_PARTS + 5))
    raw = (f"Content-Type: multipart/mixed; boundary=b\r\n\r\n{parts}--b--\r\n").encode()
    got = run(ctx.matcher(AttachmentFileNameIs, "*.exe").match(make_mail(raw)))
    assert got == [A("bob@example.com")]


def test_leaf_parts_bounds_depth_and_count():
    nested = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
                     for i in range(MAX_DEPTH + 5)) + "Content-Type: text/plain\r\n\r\nx\r\n"
    msg = email.message_from_string(nested, policy=email.policy.default)
    with pytest.raises(TooComplex, match="levels deep"):
        list(leaf_parts(msg))
    flat = email.message_from_bytes(with_attachments("a.txt", "b.txt"),
                                    policy=email.policy.default)
    assert len(list(leaf_parts(flat))) == 3
    with pytest.raises(TooComplex, match="more than 2 MIME parts"):
        list(leaf_parts(flat, max_parts=2))


# -- IsSenderInRRTLoop -------------------------------------------------------------------
def test_is_sender_in_rrt_loop_matches_a_sender_whose_mappings_loop():
    ctx = FakeMailContext(mappings={"a@example.com": ["b@example.com"],
                                  "b@example.com": ["a@example.com"],
                                  "c@example.com": ["d@example.com"]})
    matcher = ctx.matcher(IsSenderInRRTLoop)
    assert run(matcher.match(make_mail(sender="a@example.com"))) == [A("bob@example.com")]
    assert run(matcher.match(make_mail(sender="c@example.com"))) == []
    assert run(matcher.match(make_mail(sender="eve@remote.org"))) == []
    assert run(matcher.match(make_mail(sender=None))) == []


def test_a_notice_attaches_an_original_the_email_package_cannot_write_back(ctx):
    """Undecodable 8-bit bytes in a broken multipart: the original goes as a file."""
    from mailets.mailets.redirect import Redirect

    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\xff\xfe\r\n"
    run(ctx.mailet(Redirect, recipients="alice@other.org", attachment="message")
        .service(make_mail(raw)))
    run(ctx.mailet(NotifyPostmaster).service(make_mail(raw)))
    for copy, _state, _delay in ctx.sent:
        msg = parsed(copy)
        (attached,) = list(msg.iter_attachments())
        assert attached.get_filename() == "original.eml"
        assert attached.get_payload(decode=True) == raw


def test_attachment_file_name_is_matches_a_zip_too_big_or_too_full_to_read(ctx, monkeypatch):
    import mailets.matchers.attachment_names as names

    full = make_mail(with_attachments(zipped={"many.zip": [f"f{i}.txt" for i in range(30)]}))
    matcher = ctx.matcher(AttachmentFileNameIs, "-z *.exe")
    assert run(matcher.match(full)) == []
    monkeypatch.setattr(names, "MAX_ZIP_ENTRIES", 20)
    assert run(matcher.match(full)) == [A("bob@example.com")]
    monkeypatch.setattr(names, "MAX_ZIP_ENTRIES", 1000)
    monkeypatch.setattr(names, "MAX_ZIP_SIZE", 100)
    assert run(matcher.match(full)) == [A("bob@example.com")]
    not_a_zip = make_mail(with_attachments("fake.zip"))
    assert run(matcher.match(not_a_zip)) == [A("bob@example.com")]


@pytest.mark.parametrize("raw", [b'From: "\r\n\r\nbody\r\n',
                                 b"Subject: \x80\xff\r\nTo:\x80 bob@example.com\r\n\r\nx\r\n"])
def test_notices_and_redirects_survive_headers_the_email_package_cannot_parse(ctx, raw):
    from mailets.mailets.redirect import Redirect

    run(ctx.mailet(Redirect, recipients="alice@other.org", inline="all",
                   attachment="heads").service(make_mail(raw)))
    run(ctx.mailet(NotifySender).service(make_mail(raw)))
    run(ctx.mailet(UseHeaderRecipients).service(make_mail(raw)))
    assert len(ctx.sent) >= 2
    for copy, _state, _delay in ctx.sent:
        # each copy is a whole message again: a header block, an empty line, a body
        head, sep, _body = copy.message_bytes().partition(b"\r\n\r\n")
        assert sep and copy.header_names() and copy.recipients, head
