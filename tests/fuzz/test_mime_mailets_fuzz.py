"""The MIME paths of the standard mailets and matchers under malformed messages.

Messages are built from hostile pieces (broken boundaries, nested multiparts without
an end, bad encodings and charsets, encoded words, NUL and 8-bit bytes in headers, no
header/body separator) and mutations of the sample corpus. Each mailet and matcher
must finish without raising, leave a message that is bytes and still has its
headers, and do what it promises (a set header is there, a removed one is gone).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailet_mta.api import Mail, MailAddress
from mailet_mta.testing import FakeMailContext, run
from mailets.mailets.add_footer import AddFooter
from mailets.mailets.forward import Forward
from mailets.mailets.mime_headers import RemoveMimeHeader, SetMimeHeader
from mailets.mailets.redirect import Redirect
from mailets.matchers.attachments import HasAttachment
from mailets.matchers.headers import HasHeader, SubjectIs, SubjectStartsWith
from mailets.matchers.size import SizeGreaterThan
from tests.fuzz.replies import FUZZ_SETTINGS
from tests.support.examples import examples

EXAMPLES = int(os.environ.get("MAILET_MTA_FUZZ_EXAMPLES", examples(40)))
CORPUS = [p.read_bytes() for p in sorted(
    (Path(__file__).resolve().parents[1] / "support" / "messages").glob("*.eml"))]

HEADER_VALUES = st.one_of(
    st.sampled_from([b"=?utf-8?b?w6k=?=", b"=?bogus?q?x?=", b"=?utf-8?q?=FF=FE?=",
                     b"multipart/mixed; boundary=", b'multipart/mixed; boundary="b"',
                     b"multipart/alternative; boundary=\"\"", b"text/plain; charset=x-nope",
                     b"text/plain; charset=\"utf-8", b"base64", b"quoted-printable",
                     b"x-uuencode", b"\xff\xfe\x00", b"a\r\n continued", b"", b"\t",
                     b"attachment; filename=\"../../etc/passwd\"",
                     b"attachment; filename*=utf-8''%FF%FE"]),
    st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))
NAMES = st.sampled_from([b"Subject", b"Content-Type", b"Content-Transfer-Encoding",
                         b"Content-Disposition", b"From", b"To", b"MIME-Version",
                         b"X-Spam", b"Bcc", b"Message-ID"])
BODY_PIECES = st.sampled_from([b"--b\r\n", b"--b--\r\n", b"Content-Type: text/plain\r\n",
                               b"Content-Type: multipart/mixed; boundary=b\r\n",
                               b"Content-Transfer-Encoding: base64\r\n", b"\r\n",
                               b"!!!not base64===\r\n", b"=\r\n", b"=FG\r\n", b"\x00\r\n",
                               b"\xff\xfe\r\n", b"hello\r\n", b".\r\n", b"x" * 1000])


@st.composite
def messages(draw) -> bytes:
    if CORPUS and draw(st.booleans()):
        base = draw(st.sampled_from(CORPUS))
        cut = draw(st.integers(0, len(base)))
        return base[:cut] + draw(st.binary(max_size=40)) + base[cut:]
    headers = draw(st.lists(st.tuples(NAMES, HEADER_VALUES), max_size=8))
    head = b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    sep = draw(st.sampled_from([b"\r\n", b"", b"\n"]))
    body = b"".join(draw(st.lists(BODY_PIECES, max_size=15)))
    return head + sep + body


def make_mail(raw: bytes) -> Mail:
    return Mail(sender=MailAddress.parse("eve@remote.org"),
                recipients=[MailAddress.parse("bob@example.com")], message=raw)


def context() -> FakeMailContext:
    return FakeMailContext(domains=["example.com"], users=["bob@example.com"])


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(messages())
def test_add_footer_handles_any_message(raw):
    mail = make_mail(raw)
    run(context().mailet(AddFooter, text="FOOTER-TEXT").service(mail))
    assert isinstance(mail.message_bytes(), bytes)


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(messages())
def test_set_and_remove_mime_header_handle_any_message(raw):
    ctx = context()
    mail = make_mail(raw)
    run(ctx.mailet(SetMimeHeader, name="X-Fuzz", value="set").service(mail))
    assert b"X-Fuzz: set" in mail.message_bytes().split(b"\r\n\r\n", 1)[0]
    run(ctx.mailet(RemoveMimeHeader, name="X-Fuzz").service(mail))
    assert b"X-Fuzz:" not in mail.message_bytes().split(b"\r\n\r\n", 1)[0]


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(messages())
def test_forward_and_redirect_handle_any_message(raw):
    ctx = context()
    run(ctx.mailet(Forward, forwardTo="alice@other.org", passThrough="true")
        .service(make_mail(raw)))
    run(ctx.mailet(Redirect, recipients="alice@other.org", prefix="[fwd]",
                   attachment="all", passThrough="true").service(make_mail(raw)))
    assert len(ctx.sent) == 2
    for copy, _state, _delay in ctx.sent:
        assert isinstance(copy.message_bytes(), bytes)


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(messages())
def test_header_attachment_and_size_matchers_handle_any_message(raw):
    ctx = context()
    for matcher in (ctx.matcher(HasAttachment), ctx.matcher(HasHeader, "X-Spam"),
                    ctx.matcher(SubjectStartsWith, "[SPAM]"), ctx.matcher(SubjectIs, "x"),
                    ctx.matcher(SizeGreaterThan, "1k")):
        result = run(matcher.match(make_mail(raw)))
        assert result is None or isinstance(result, (list, tuple, set, frozenset))


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(messages())
def test_james_mime_mailets_and_matchers_handle_any_message(raw):
    """AddSubjectPrefix, NotifySender, HasMimeType and AttachmentFileNameIs."""
    from mailets.mailets.notify import NotifySender
    from mailets.mailets.subject_prefix import AddSubjectPrefix
    from mailets.matchers.attachment_names import AttachmentFileNameIs
    from mailets.matchers.mime_type import HasMimeType

    ctx = FakeMailContext(domains=["example.com"], users=["bob@example.com"])
    mail = make_mail(raw)
    run(ctx.mailet(AddSubjectPrefix, subjectPrefix="[tag]").service(mail))
    assert str(mail.message["Subject"]).startswith("[tag]")
    run(ctx.mailet(NotifySender, notice="seen", attachError="true").service(make_mail(raw)))
    assert len(ctx.sent) == 1     # every recipient is local: the notice goes out
    for copy, _state, _delay in ctx.sent:
        assert isinstance(copy.message_bytes(), bytes)
    for matcher in (ctx.matcher(HasMimeType, "text/plain"),
                    ctx.matcher(AttachmentFileNameIs, "-z *.exe, *.zip")):
        result = run(matcher.match(make_mail(raw)))
        assert isinstance(result, list)
