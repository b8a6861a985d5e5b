"""Header edits on the raw header block: the same fields as the stdlib's edits of a
parsed message, the body byte for byte, no MIME parse whatever the message's shape."""

from __future__ import annotations

import email.parser
import io
import time

import pytest

from mailet_mta.mail import MAIL_POLICY, Mail, MessageSource
from mailet_mta.testing import FakeMailContext
from mailets.mailets.mime_headers import RemoveMimeHeader, SetMimeHeader

RAWS = [
    b"Received: a\r\nBcc: q@x\r\n\tcont\r\nX-A: 1\r\nbcc: again\r\n\r\nhi\r\nBcc: body\r\n",
    b"From someone@example.org Mon Nov 30 10:00:00 2026\r\nBcc: a\r\nTo: y\r\n\r\nbody\r\n",
    b"To: x\nBCC: y\n z\n\nbody\n",
    b"Bcc: only\r\n",
    b"To: a\r\nnot a header line\r\nBcc: after the end\r\n\r\nbody\r\n",
    b"\r\nBcc: in the body\r\n",
    b"Subject: s\r\nBcc: last, no newline",
]


def parsed_items(raw: bytes):
    msg = email.parser.BytesParser(policy=MAIL_POLICY).parsebytes(raw)
    return msg, [(k, str(v)) for k, v in msg.items()]


@pytest.mark.parametrize("raw", RAWS)
def test_raw_removal_leaves_the_fields_the_stdlib_removal_leaves(raw):
    expected, _ = parsed_items(raw)
    removed_by_stdlib = len(expected.get_all("bcc") or [])
    del expected["bcc"]
    mail = Mail(message=raw)
    assert mail.remove_headers(["BCC"]) == removed_by_stdlib
    assert mail._message is None                        # nothing was parsed
    assert parsed_items(mail.message_bytes())[1] == [(k, str(v)) for k, v in expected.items()]
    assert mail.message_bytes().endswith(expected.get_payload().encode())


@pytest.mark.parametrize("raw", RAWS)
@pytest.mark.parametrize("value", ["plain value", "caf\u00e9 \u00fcber alles", "x " * 60])
def test_raw_addition_adds_the_field_the_stdlib_adds(raw, value):
    expected, _ = parsed_items(raw)
    expected["X-New"] = value
    mail = Mail(message=raw)
    mail.add_header("X-New", value)
    assert mail._message is None
    assert parsed_items(mail.message_bytes())[1] == [(k, str(v)) for k, v in expected.items()]


def test_edits_of_a_parsed_message_go_to_the_parsed_message():
    mail = Mail(message=RAWS[0])
    mail.message["X-B"] = "2"
    assert mail.remove_headers(["bcc", "x-a"]) == 3
    mail.add_header("X-C", "3")
    assert reparse_names(mail) == ["received", "x-b", "x-c"]


def reparse_names(mail):
    return [k.lower() for k in parsed_items(mail.message_bytes())[0].keys()]


def many_parts(n: int) -> bytes:
    head = (b"From: a@b\r\nBcc: secret@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n")
    return head + b"--b\r\n\r\nx\r\n" * n + b"--b--\r\n"


def test_remove_mime_header_on_a_blob_of_100k_parts_rewrites_only_the_header():
    data = many_parts(100_000)
    mail = Mail(message=MessageSource(size=len(data), loader=lambda: data,
                                     opener=lambda: io.BytesIO(data), blob_id="b1"))
    mailet = RemoveMimeHeader()
    from mailet_mta.api import MailetConfig
    mailet.init(MailetConfig("RemoveMimeHeader", FakeMailContext(), {"name": "bcc"}))
    started = time.perf_counter()
    mailet.service(mail)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"RemoveMimeHeader took {elapsed:.2f}s"
    assert mail._message is None and mail.source.blob_id is None     # a new blob is due
    expected = data.replace(b"Bcc: secret@example.com\r\n", b"")
    assert mail.size == len(expected) and mail.message_bytes() == expected
    with mail.open_message() as f:
        assert f.read(10) + f.read() == expected


def test_set_mime_header_does_not_parse_the_message():
    from mailet_mta.api import MailetConfig
    mailet = SetMimeHeader()
    mailet.init(MailetConfig("SetMimeHeader", FakeMailContext(), {"name": "X-A", "value": "1"}))
    mail = Mail(message=many_parts(1000))
    mailet.service(mail)
    assert mail._message is None and mail.header_names()[-1] == "x-a"
