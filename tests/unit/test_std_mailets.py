"""The standard mailets (those that need no delivery server)."""

from __future__ import annotations

import email
import email.policy

import pytest

from mailet_mta.api import ATTR_SENT_BY_MAILET, ConfigurationError, Mail, MailAddress
from mailet_mta.testing import FakeMailContext, run
from mailets.mailets.add_footer import AddFooter
from mailets.mailets.forward import Forward
from mailets.mailets.log_message import LogMessage
from mailets.mailets.mime_headers import RemoveMimeHeader, SetMimeHeader
from mailets.mailets.null import Null
from mailets.mailets.postmaster_alias import PostmasterAlias
from mailets.mailets.recipient_rewrite_table import RecipientRewriteTable
from mailets.mailets.redirect import Redirect
from mailets.mailets.set_mail_attribute import SetMailAttribute
from mailets.mailets.to_processor import ToProcessor
from mailets.mailets.to_repository import ToRepository, repository_name

A = MailAddress.parse
PLAIN = (b"From: Eve <eve@remote.org>\r\nTo: bob@example.com\r\nSubject: Hello\r\n"
         b"Message-ID: <1@remote.org>\r\n\r\nHi Bob,\r\nsee you.\r\n")


@pytest.fixture
def ctx():
    return FakeMailContext(domains=["example.com", "example.net"],
                         users=["bob@example.com", "postmaster@example.com"])


def make_mail(message=PLAIN, recipients=("bob@example.com",), sender="eve@remote.org", **kw):
    return Mail(sender=A(sender) if sender else None, recipients=[A(r) for r in recipients],
                message=message, **kw)


def reparse(mail) -> email.message.EmailMessage:
    return email.message_from_bytes(mail.message_bytes(), policy=email.policy.default)


# -- parameters ----------------------------------------------------------------------
@pytest.mark.parametrize("cls,params", [
    (ToProcessor, {"processor": "transport"}),
    (Null, {}),
    (SetMimeHeader, {"name": "X-A", "value": "1"}),
    (RemoveMimeHeader, {"name": "Bcc"}),
    (LogMessage, {}),
    (AddFooter, {"text": "footer"}),
    (Forward, {"forwardTo": "a@b.org"}),
    (Redirect, {"recipients": "a@b.org"}),
    (ToRepository, {"repositoryPath": "error"}),
    (PostmasterAlias, {}),
    (RecipientRewriteTable, {}),
])
def test_unknown_parameters_are_refused_at_init(ctx, cls, params):
    ctx.mailet(cls, **params)   # the valid set is accepted
    with pytest.raises(ConfigurationError, match="unknown parameter.*procesor"):
        ctx.mailet(cls, procesor="x", **params)


@pytest.mark.parametrize("cls,params,missing", [
    (ToProcessor, {}, "processor"),
    (SetMimeHeader, {"value": "1"}, "name"),
    (SetMimeHeader, {"name": "X-A"}, "value"),
    (RemoveMimeHeader, {}, "name"),
    (AddFooter, {}, "text"),
    (Forward, {}, "forwardTo"),
    (Redirect, {}, "recipients"),
    (ToRepository, {}, "repositoryPath"),
    (SetMailAttribute, {}, "at least one"),
])
def test_required_parameters_are_checked_at_init(ctx, cls, params, missing):
    with pytest.raises(ConfigurationError, match=missing):
        ctx.mailet(cls, **params)


# -- routing -------------------------------------------------------------------------
def test_to_processor_moves_the_mail_and_sets_the_notice(ctx):
    mailet = ctx.mailet(ToProcessor, processor="local-address-error",
                        notice="550 - Requested action not taken: no such user here")
    mail = make_mail()
    run(mailet.service(mail))
    assert mail.state == "local-address-error"
    assert mail.error_message.startswith("550")
    assert mailet.required_processors() == ["local-address-error"]


def test_to_processor_without_notice_keeps_the_error_message(ctx):
    mail = make_mail(error_message="earlier")
    run(ctx.mailet(ToProcessor, processor="transport").service(mail))
    assert (mail.state, mail.error_message) == ("transport", "earlier")


def test_to_processor_refuses_ghost(ctx):
    with pytest.raises(ConfigurationError, match="Null"):
        ctx.mailet(ToProcessor, processor="ghost")


def test_null_ghosts_the_mail(ctx):
    mail = make_mail()
    run(ctx.mailet(Null).service(mail))
    assert mail.state == Mail.GHOST


# -- headers and attributes ----------------------------------------------------------
def test_set_mime_header_adds_a_header(ctx):
    mail = make_mail(message=PLAIN.replace(b"Subject", b"X-Tag: old\r\nSubject"))
    run(ctx.mailet(SetMimeHeader, name="X-Tag", value="new").service(mail))
    assert reparse(mail).get_all("X-Tag") == ["old", "new"]


def test_set_mime_header_refuses_a_multi_line_value(ctx):
    with pytest.raises(ConfigurationError, match="one line"):
        ctx.mailet(SetMimeHeader, name="X-A", value="a\r\nBcc: x@y.org")


def test_remove_mime_header_removes_every_listed_header(ctx):
    message = PLAIN.replace(b"Subject", b"Bcc: x@y.org\r\nBCC: z@y.org\r\nX-S: 1\r\nSubject")
    mail = make_mail(message=message)
    run(ctx.mailet(RemoveMimeHeader, name="bcc, X-S").service(mail))
    parsed = reparse(mail)
    assert "Bcc" not in parsed and "X-S" not in parsed and parsed["Subject"] == "Hello"


def test_remove_mime_header_leaves_the_bytes_alone_when_absent(ctx):
    mail = make_mail()
    run(ctx.mailet(RemoveMimeHeader, name="Bcc").service(mail))
    assert not mail.message_changed and mail.message_bytes() == PLAIN


def test_set_mail_attribute_sets_every_parameter(ctx):
    mail = make_mail()
    run(ctx.mailet(SetMailAttribute, **{"org.example.a": "1", "org.example.b": True})
        .service(mail))
    assert mail.attributes == {"org.example.a": "1", "org.example.b": True}


# -- LogMessage ----------------------------------------------------------------------
def test_log_message_logs_headers_body_and_comment_with_the_mail_name(ctx):
    mail = make_mail()
    run(ctx.mailet(LogMessage, comment="at root").service(mail))
    text = ctx.log_text()
    assert "at root" in text and mail.name in text
    assert "Subject: Hello" in text and "see you." in text
    assert ctx.events[0]["mail_name"] == mail.name
    assert mail.state == "root"


def test_log_message_never_logs_more_than_max_body(ctx):
    mail = make_mail(message=PLAIN + b"A" * 5000 + b"TAIL")
    run(ctx.mailet(LogMessage, maxBody="100", headers="false").service(mail))
    text = ctx.log_text()
    assert "TAIL" not in text and "Subject" not in text
    assert "A" * 80 in text and "A" * 101 not in text and "cut at 100" in text


def test_log_message_body_false_logs_no_body(ctx):
    run(ctx.mailet(LogMessage, body="false").service(make_mail()))
    assert "see you" not in ctx.log_text() and "Subject: Hello" in ctx.log_text()


def test_log_message_pass_through_false_ghosts(ctx):
    mail = make_mail()
    run(ctx.mailet(LogMessage, passThrough="false").service(mail))
    assert mail.state == Mail.GHOST


def test_log_message_refuses_a_bad_boolean(ctx):
    with pytest.raises(ConfigurationError, match="headers"):
        ctx.mailet(LogMessage, headers="maybe")


# -- AddFooter -----------------------------------------------------------------------
FOOTER = "-- \nSent via <example> & co"

HTML = (b"From: eve@remote.org\r\nSubject: h\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><p>Hi</p></body></html>\r\n")

ALTERNATIVE = (
    b"From: eve@remote.org\r\nSubject: m\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=OUT\r\n\r\n"
    b"--OUT\r\nContent-Type: multipart/alternative; boundary=IN\r\n\r\n"
    b"--IN\r\nContent-Type: text/plain; charset=iso-8859-1; format=flowed\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 plain\r\n"
    b"--IN\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><BODY>Caf\xc3\xa9 html</BODY></html>\r\n--IN--\r\n"
    b"--OUT\r\nContent-Type: text/plain; name=notes.txt\r\n"
    b"Content-Disposition: attachment; filename=notes.txt\r\n\r\nattached text\r\n"
    b"--OUT\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n"
    b"--OUT--\r\n")


def test_add_footer_appends_to_a_plain_single_part(ctx):
    mail = make_mail()
    run(ctx.mailet(AddFooter, text=FOOTER).service(mail))
    body = reparse(mail).get_content()
    assert body.startswith("Hi Bob,") and body.rstrip().endswith("Sent via <example> & co")
    assert reparse(mail)["Subject"] == "Hello"


def test_add_footer_inserts_escaped_html_before_body_end(ctx):
    mail = make_mail(message=HTML)
    run(ctx.mailet(AddFooter, text=FOOTER).service(mail))
    html = reparse(mail).get_content()
    assert "Sent via &lt;example&gt; &amp; co" in html
    assert html.index("&amp; co") < html.index("</body>")
    assert html.index("<p>Hi</p>") < html.index("&amp; co")


def test_add_footer_changes_text_bodies_of_multipart_only(ctx):
    mail = make_mail(message=ALTERNATIVE)
    run(ctx.mailet(AddFooter, text="FOOT").service(mail))
    parsed = reparse(mail)
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert plain.get_content().rstrip().endswith("FOOT") and "Café plain" in plain.get_content()
    assert plain.get_content_charset() == "iso-8859-1"
    assert plain.get_param("format") == "flowed"
    assert "Café html<br />FOOT" in html.get_content().replace("\n", "")
    attachment = next(p for p in parsed.iter_attachments() if p.get_filename() == "notes.txt")
    assert "FOOT" not in attachment.get_content()
    inner = next(p for p in parsed.walk() if p.get_content_type() == "message/rfc822")
    assert b"FOOT" not in inner.as_bytes()


def test_add_footer_falls_back_to_utf8_when_the_charset_cannot_hold_it(ctx):
    mail = make_mail(message=ALTERNATIVE)
    run(ctx.mailet(AddFooter, text="Grüße 😀").service(mail))
    plain = reparse(mail).get_body(preferencelist=("plain",))
    assert plain.get_content_charset() == "utf-8"
    assert plain.get_content().rstrip().endswith("Grüße 😀")


def test_add_footer_leaves_non_text_single_parts_unchanged(ctx):
    message = (b"Subject: pdf\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n")
    mail = make_mail(message=message)
    run(ctx.mailet(AddFooter, text="FOOT").service(mail))
    assert not mail.message_changed and mail.message_bytes() == message


# -- Forward and Redirect ------------------------------------------------------------
def test_forward_sends_an_unchanged_marked_copy_and_ghosts_the_original(ctx):
    mail = make_mail(attributes={"org.example.x": 1})
    run(ctx.mailet(Forward, forwardTo="alice@other.org, postmaster").service(mail))
    assert mail.state == Mail.GHOST
    [(copy, state, _)] = ctx.sent
    assert state == "root" and copy.name != mail.name
    assert copy.recipients == [A("alice@other.org"), A("postmaster@example.com")]
    assert copy.sender == A("eve@remote.org")
    assert copy.get_attribute(ATTR_SENT_BY_MAILET) is True
    assert copy.get_attribute("org.example.x") == 1
    assert copy.message_bytes() == PLAIN
    assert mail.recipients == [A("bob@example.com")]


def test_forward_pass_through_keeps_the_original(ctx):
    mail = make_mail()
    run(ctx.mailet(Forward, forwardTo="alice@other.org", passThrough="true").service(mail))
    assert mail.state == "root" and len(ctx.sent) == 1


def test_forward_refuses_an_invalid_address(ctx):
    with pytest.raises(ConfigurationError, match="forwardTo.*nope"):
        ctx.mailet(Forward, forwardTo="nope")


def test_redirect_rewrites_headers_and_envelope(ctx):
    mail = make_mail()
    run(ctx.mailet(Redirect, recipients="alice@other.org, sender", to="alice@other.org",
                   sender="postmaster", reversePath="null", prefix="[fwd]").service(mail))
    assert mail.state == Mail.GHOST
    [(copy, state, _)] = ctx.sent
    assert copy.recipients == [A("alice@other.org"), A("eve@remote.org")]
    assert copy.sender is None
    parsed = reparse(copy)
    assert parsed["Subject"] == "[fwd] Hello"
    assert parsed["To"] == "alice@other.org"
    assert parsed["From"] == "postmaster@example.com"
    assert "see you." in parsed.get_content()
    assert copy.get_attribute(ATTR_SENT_BY_MAILET) is True
    assert reparse(mail)["Subject"] == "Hello"     # the original is untouched


def test_redirect_defaults_recipients_to_the_to_list_and_sender_to_the_envelope(ctx):
    mail = make_mail()
    run(ctx.mailet(Redirect, to="carol@other.org", sender="boss@example.com",
                   passThrough="true").service(mail))
    [(copy, _, _)] = ctx.sent
    assert copy.recipients == [A("carol@other.org")]
    assert copy.sender == A("boss@example.com")
    assert mail.state == "root"


def test_redirect_attaches_the_original_message(ctx):
    mail = make_mail()
    run(ctx.mailet(Redirect, recipients="postmaster", inline="none", attachment="message",
                   message="Please look at this.", subject="Report").service(mail))
    [(copy, _, _)] = ctx.sent
    parsed = reparse(copy)
    assert parsed["Subject"] == "Report"
    assert parsed.get_body(preferencelist=("plain",)).get_content().startswith("Please look")
    [attached] = list(parsed.iter_attachments())
    assert attached.get_content_type() == "message/rfc822"
    assert attached.get_content()["Message-ID"] == "<1@remote.org>"


def test_redirect_inline_heads_puts_the_headers_in_the_body(ctx):
    mail = make_mail()
    run(ctx.mailet(Redirect, recipients="postmaster", inline="heads").service(mail))
    body = reparse(ctx.sent[0][0]).get_content()
    assert "Message-ID: <1@remote.org>" in body and "see you" not in body


def test_redirect_refuses_unknown_inline_values(ctx):
    with pytest.raises(ConfigurationError, match="inline"):
        ctx.mailet(Redirect, recipients="postmaster", inline="sometimes")


# -- ToRepository --------------------------------------------------------------------
@pytest.mark.parametrize("path,name", [
    ("error", "error"), ("file://var/mail/error/", "error"),
    ("file:///var/mail/relay-limit-exceeded", "relay-limit-exceeded"),
    ("memory://var/mail/spam/", "spam"),
])
def test_repository_name_takes_the_last_path_component(path, name):
    assert repository_name(path) == name


def test_to_repository_stores_and_ghosts(ctx):
    mail = make_mail()
    run(ctx.mailet(ToRepository, repositoryPath="file://var/mail/error/").service(mail))
    assert [(r, m.name) for r, m in ctx.stored] == [("error", mail.name)]
    assert mail.state == Mail.GHOST


def test_to_repository_pass_through_keeps_the_mail(ctx):
    mail = make_mail()
    run(ctx.mailet(ToRepository, repositoryPath="spam", passThrough="true").service(mail))
    assert ctx.stored[0][0] == "spam" and mail.state == "root"


def test_to_repository_refuses_a_path_without_a_name(ctx):
    with pytest.raises(ConfigurationError, match="names no repository"):
        ctx.mailet(ToRepository, repositoryPath="file:///")


# -- PostmasterAlias -----------------------------------------------------------------
def test_postmaster_alias_rewrites_postmaster_of_local_domains(ctx):
    ctx.postmaster = A("admin@example.com")
    mail = make_mail(recipients=["PostMaster@example.net", "postmaster@example.com",
                                 "postmaster@remote.org", "bob@example.com",
                                 "admin@example.com"])
    run(ctx.mailet(PostmasterAlias).service(mail))
    assert mail.recipients == [A("admin@example.com"), A("postmaster@remote.org"),
                               A("bob@example.com")]


def test_postmaster_alias_leaves_other_mail_alone(ctx):
    mail = make_mail(recipients=["bob@example.com"])
    before = mail.recipients
    run(ctx.mailet(PostmasterAlias).service(mail))
    assert mail.recipients is before


def test_add_footer_keeps_quoted_printable_and_adds_no_mime_version_to_parts(ctx):
    mail = make_mail(message=ALTERNATIVE)
    run(ctx.mailet(AddFooter, text="Grüße").service(mail))
    data = mail.message_bytes()
    assert data.count(b"MIME-Version") == 1
    assert all(b < 128 for b in data)          # no raw 8-bit where there was none
    plain = reparse(mail).get_body(preferencelist=("plain",))
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"


# -- short names ---------------------------------------------------------------------
def classes_in(package):
    """{class name: [modules defining it]} over the modules of ``package``."""
    import importlib
    import pkgutil

    found: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == module.__name__:
                found.setdefault(name, []).append(module.__name__)
    return found


def test_standard_names_resolve_to_exactly_one_class_each():
    from zope.interface.verify import verifyClass

    import mailets.mailets
    import mailets.matchers
    from mailet_mta.api import IMailet, IMatcher

    matchers = classes_in(mailets.matchers)
    mailet_classes = classes_in(mailets.mailets)
    expected_matchers = """All RecipientIsLocal HostIsLocal HostIs UserIs RecipientIs
        RecipientIsRegex SenderIs SenderIsRegex SenderIsNull SenderIsLocal SenderHostIs
        RemoteAddrInNetwork
        RemoteAddrNotInNetwork SMTPAuthSuccessful SMTPAuthUserIs SMTPIsAuthNetwork
        SentByMailet RelayLimit HasHeader HasMailAttribute HasAttachment SizeGreaterThan
        SubjectStartsWith SubjectIs IsSingleRecipient TooManyRecipients""".split()
    expected_mailets = """ToProcessor Null SetMimeHeader RemoveMimeHeader SetMailAttribute
        LogMessage AddFooter Forward Redirect ToRepository PostmasterAlias
        RecipientRewriteTable""".split()
    for name in expected_matchers:
        assert len(matchers.get(name, [])) == 1, name
        module = __import__(matchers[name][0], fromlist=[name])
        assert verifyClass(IMatcher, getattr(module, name))
    for name in expected_mailets:
        assert len(mailet_classes.get(name, [])) == 1, name
        module = __import__(mailet_classes[name][0], fromlist=[name])
        assert verifyClass(IMailet, getattr(module, name))
