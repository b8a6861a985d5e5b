"""MIME limits for every mailet that parses, and bounces that carry a bounded part of
the original: hostile shapes cost bounded time and get their documented outcome."""

from __future__ import annotations

import email
import email.policy
import time

import pytest

from mailet_mta.api import ConfigurationError, MailAddress, MimeLimitError
from mailet_mta.config.model import ProcessorSpec, SpoolManagerConfig
from mailet_mta.mail import Mail, MimeLimits
from mailet_mta.spool.processor import Pipeline
from mailet_mta.testing import FakeMailContext, run
from mailets.mailets.add_footer import AddFooter
from mailets.mailets.bounce import Bounce
from mailets.mailets.dsn_bounce import DSNBounce
from mailets.mailets.redirect import Redirect


def many_parts(n: int, filler: bytes = b"x") -> bytes:
    head = (b"From: a@remote.org\r\nBcc: secret@example.com\r\nSubject: parts\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
    return head + b"--b\r\nContent-Type: text/plain\r\n\r\n" + filler + b"\r\n" \
        + b"--b\r\n\r\nx\r\n" * (n - 2) + b"--b--\r\n"


def nested(depth: int) -> bytes:
    head, tail = b"", b""
    for i in range(depth - 1):
        head += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        tail = b"\r\n--b%d--\r\n" % i + tail
    return (b"From: a@remote.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + head
            + b"Content-Type: text/plain\r\n\r\nhi" + tail)


def mail_of(data: bytes, **kw) -> Mail:
    return Mail(sender=MailAddress.parse("a@remote.org"),
                recipients=[MailAddress.parse("bob@example.com")], message=data, **kw)


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


# -- the parse ----------------------------------------------------------------------
@pytest.mark.parametrize("data, limit", [
    (many_parts(100_000), "maxMimeParts"),
    (nested(5000), "maxMimeDepth"),
])
def test_a_parse_past_the_limits_stops_early_with_mime_limit_error(data, limit):
    mail = mail_of(data)
    with pytest.raises(MimeLimitError, match=limit) as first:
        _, elapsed = timed(lambda: mail.message)
    _, again = timed(lambda: pytest.raises(MimeLimitError, lambda: mail.message))
    assert again < 0.05                 # the refusal is remembered, not parsed again
    assert "spoolmanager" in str(first.value)


def test_a_message_at_the_limits_parses():
    mail = mail_of(many_parts(50))              # the message and 49 parts
    mail.mime_limits = MimeLimits(max_parts=50, max_depth=2)
    assert len(list(mail.message.iter_parts())) == 49
    more = mail_of(many_parts(51))
    more.mime_limits = MimeLimits(max_parts=50, max_depth=2)
    with pytest.raises(MimeLimitError):
        _ = more.message
    deep = mail_of(nested(10))
    deep.mime_limits = MimeLimits(max_parts=100, max_depth=10)
    assert deep.message["Subject"] == "deep"
    deep = mail_of(nested(11))
    deep.mime_limits = MimeLimits(max_parts=100, max_depth=10)
    with pytest.raises(MimeLimitError):
        _ = deep.message


def test_the_pipeline_gives_each_mail_the_configured_limits():
    class Record:
        def init(self, config):
            pass

        def service(self, mail):
            seen.append(mail.mime_limits)
            mail.state = "ghost"

    seen = []
    procs = {"root": ProcessorSpec("root"), "error": ProcessorSpec("error")}
    pipeline = Pipeline(SpoolManagerConfig(processors=procs, max_mime_parts=7,
                                           max_mime_depth=3), FakeMailContext())
    from mailet_mta.spool.processor import Pair
    pipeline.processors["root"].pairs.append(Pair(None, Record(), False, "error", "error",
                                                  "All/Record", None))
    run(pipeline.run(mail_of(b"Subject: x\r\n\r\nhi\r\n")))
    assert seen == [MimeLimits(7, 3)]


# -- the mailets ----------------------------------------------------------------------
def test_add_footer_leaves_a_message_past_the_limits_unchanged_and_says_why():
    ctx = FakeMailContext()
    mailet = ctx.mailet(AddFooter, text="-- footer")
    data = many_parts(100_000)
    mail = mail_of(data)
    _, elapsed = timed(lambda: run(mailet.service(mail)))
    assert elapsed < 5 and mail.message_bytes() == data
    assert ctx.worker_calls == 1
    assert "more than 1000 MIME parts (spoolmanager maxMimeParts); no footer added" \
        in ctx.log_text()


def test_redirect_refuses_a_message_past_the_limits_with_the_limit_named():
    ctx = FakeMailContext()
    mailet = ctx.mailet(Redirect, recipients="carol@example.com", attachment="message")
    with pytest.raises(MimeLimitError, match="maxMimeDepth"):
        run(mailet.service(mail_of(nested(500))))
    assert ctx.sent == []


def test_redirect_edits_the_headers_of_an_unaltered_copy_without_a_parse():
    ctx = FakeMailContext()
    mailet = ctx.mailet(Redirect, recipients="carol@example.com", to="carol@example.com",
                        prefix="[fwd]")
    data = many_parts(100_000)
    mail = mail_of(data)
    _, elapsed = timed(lambda: run(mailet.service(mail)))
    (copy, _, _), = ctx.sent
    assert elapsed < 1.0 and copy._message is None
    assert copy.headers()["Subject"] == "[fwd] parts" and copy.headers()["To"] == \
        "carol@example.com"
    assert copy.message_bytes().endswith(data[data.index(b"\r\n\r\n"):])


# -- bounces ---------------------------------------------------------------------------
def parse(notice) -> email.message.EmailMessage:
    return email.message_from_bytes(notice.message_bytes(), policy=email.policy.default)


def returned(msg):
    *_, last = msg.iter_parts()
    return last


BIG = b"From: a@remote.org\r\nSubject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 70_000


@pytest.mark.parametrize("cls, params", [
    (DSNBounce, {}), (Bounce, {}), (DSNBounce, {"bounceSizeLimit": "10k"}),
    (Bounce, {"bounceSizeLimit": 10240}),
])
@pytest.mark.parametrize("data", [BIG, many_parts(100_000)])
def test_a_bounce_carries_at_most_bounce_size_limit_of_the_original(cls, params, data):
    ctx = FakeMailContext()
    limit = {"10k": 10240, 10240: 10240}.get(params.get("bounceSizeLimit"), 50000)
    mail = mail_of(data)
    _, elapsed = timed(lambda: run(ctx.mailet(cls, **params).service(mail)))
    (notice, _, _), = ctx.sent
    msg = parse(notice)
    original = returned(msg)
    assert original.get_content_type() == "message/rfc822"
    body = original.get_payload(0)
    assert body["From"] == "a@remote.org"
    assert limit - 200 < len(notice.message_bytes()) < limit + 3000
    assert f"The original message was {len(data)} octets; only its first {limit} " \
        "octets are returned." in msg.get_body(("plain",)).get_content()
    assert mail._message is None and elapsed < 2.0
    assert ctx.worker_calls == 1


def test_a_small_original_is_returned_whole_byte_for_byte():
    ctx = FakeMailContext()
    data = b"From: a@remote.org\r\nSubject: small\r\n\r\nhello\r\n"
    run(ctx.mailet(Bounce).service(mail_of(data)))
    (notice, _, _), = ctx.sent
    assert data in notice.message_bytes()
    assert "only its first" not in notice.message_bytes().decode()


def test_an_8bit_original_past_the_mime_limits_returns_its_header_only():
    ctx = FakeMailContext()
    data = many_parts(6000).replace(b"Subject: parts", b"Subject: caf\xc3\xa9")
    run(ctx.mailet(DSNBounce).service(mail_of(data)))
    (notice, _, _), = ctx.sent
    original = returned(parse(notice))
    assert original.get_content_type() == "text/rfc822-headers"
    assert "Bcc: secret@example.com" in original.get_content()
    assert "(the message has more than 1000 MIME parts (spoolmanager maxMimeParts)); only " \
        "its header is returned." in " ".join(
            parse(notice).get_body(("plain",)).get_content().split())


def test_an_8bit_original_within_the_limits_is_attached_parsed():
    ctx = FakeMailContext()
    data = b"From: a@remote.org\r\nSubject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n"
    run(ctx.mailet(Bounce).service(mail_of(data)))
    (notice, _, _), = ctx.sent
    original = returned(parse(notice))
    assert original.get_content_type() == "message/rfc822"
    assert b"na\xc3\xafve" in notice.message_bytes()


def test_bounce_size_limit_must_be_positive():
    with pytest.raises(ConfigurationError, match="bounceSizeLimit"):
        FakeMailContext().mailet(DSNBounce, bounceSizeLimit="0")


def test_has_attachment_parses_on_a_worker_and_stops_at_the_limits():
    from mailets.matchers.attachments import HasAttachment
    ctx = FakeMailContext()
    matcher = ctx.matcher(HasAttachment)
    with pytest.raises(MimeLimitError, match="maxMimeParts"):
        run(matcher.match(mail_of(many_parts(100_000))))
    attached = many_parts(3).replace(b"--b\r\n\r\nx", b"--b\r\nContent-Disposition: "
                                     b"attachment; filename=a.txt\r\n\r\nx")
    assert run(matcher.match(mail_of(attached))) == [MailAddress.parse("bob@example.com")]
    assert ctx.worker_calls == 2
