"""Mail.headers() parses the header block only, however large the body."""

from __future__ import annotations

import email.parser
import io
import time

import pytest

from mailet_mta.header_block import HEADER_BLOCK_LIMIT
from mailet_mta.mail import MAIL_POLICY, Mail, MessageSource

BODY = b"x" * 70 + b"\r\n"


class CountingFile(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.octets_read = 0

    def read(self, n=-1):
        chunk = super().read(n)
        self.octets_read += len(chunk)
        return chunk


@pytest.mark.parametrize("head", [
    b"Subject: hi\r\nReceived: from a\r\n\tby b\r\nTo: <c@d>\r\n\r\n",
    b"Subject: lf only\nTo: <c@d>\n\n",
    b"\r\n",
    b"Subject: no body at all\r\n",
])
def test_headers_from_a_file_match_the_stdlib_parse_of_the_whole_message(head):
    data = head + BODY * 50
    mail = Mail(message=MessageSource(size=len(data), loader=lambda: data,
                                     opener=lambda: io.BytesIO(data)))
    whole = email.parser.BytesHeaderParser(policy=MAIL_POLICY).parsebytes(data)
    assert [(k, str(v)) for k, v in mail.headers().items()] == \
        [(k, str(v)) for k, v in whole.items()]


def test_headers_of_a_large_file_backed_message_read_only_the_start_of_the_file():
    data = b"Subject: big\r\nTo: <c@d>\r\n\r\n" + BODY * 200_000      # 14 MB
    opened = []

    def opener():
        opened.append(CountingFile(data))
        return opened[-1]

    mail = Mail(message=MessageSource(size=len(data), loader=lambda: data, opener=opener))
    assert mail.headers()["Subject"] == "big"
    assert opened[0].octets_read < 100_000


@pytest.mark.parametrize("raw", [
    b"From someone@example.org Mon Nov 30 10:00:00 2026\r\nReceived: a\r\n b\r\n"
    b"received:c\r\nTo: y\r\n\r\nbody\r\nReceived: in the body\r\n",
    b"Received: a\r\nBcc: q\r\n\tcont\r\nX-A: 1\r\n\r\nhi\r\nFoo: bar\r\n",
    b"not a header line\r\nReceived: x\r\n\r\n",
    b"Subject : space before the colon ends the block\r\nReceived: x\r\n\r\n",
    b":nameless\r\nTo: x\r\n\r\n",
    b"To: x\nCC: y\n\nbody",
    b"To: no body",
    b"",
])
def test_header_names_agree_with_the_stdlib_parser(raw):
    parsed = email.parser.BytesHeaderParser(policy=MAIL_POLICY).parsebytes(raw)
    mail = Mail(message=raw)
    assert mail.header_names() == [k.lower() for k in parsed.keys()]
    assert mail._message is None            # answered from the raw block, nothing parsed


def test_header_names_follow_changes_to_the_message():
    mail = Mail(message=b"Received: a\r\nBcc: b@c\r\nSubject: s\r\n\r\nbody\r\n")
    assert mail.header_names().count("received") == 1 and mail.has_header("BCC")
    del mail.message["Bcc"]
    mail.message["Received"] = "another"
    assert not mail.has_header("bcc")
    assert mail.header_names().count("received") == 2
    mail.set_message_bytes(b"X-Only: 1\r\n\r\n")
    assert mail.header_names() == ["x-only"]


def _file_mail(data: bytes) -> Mail:
    return Mail(message=MessageSource(size=len(data), loader=lambda: data,
                                     opener=lambda: io.BytesIO(data)))


def test_an_endless_header_block_is_read_in_linear_time_and_cut_at_the_limit():
    data = b"X-Filler: " + b"a" * 60 + b"\r\n"
    data = data * (8 * 1024 * 1024 // len(data))            # 8 MB, no empty line
    started = time.perf_counter()
    block = _file_mail(data).header_block()
    elapsed = time.perf_counter() - started
    assert len(block) == HEADER_BLOCK_LIMIT
    assert elapsed < 1.0, f"reading the header block took {elapsed:.2f}s"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_an_empty_line_straddling_two_reads_ends_the_block(chunk):
    from mailet_mta.mail import _read_header_block
    for head in (b"A: 1\r\nB: 2\r\n\r\n", b"A: 1\nB: 2\n\n", b"\r\n", b"A: 1\r\n\n"):
        data = head + b"body\r\n\r\nmore\r\n"
        assert _read_header_block(io.BytesIO(data), chunk=chunk) == head


def test_a_header_block_longer_than_the_limit_is_cut_there():
    from mailet_mta.mail import _read_header_block
    data = b"A: " + b"x" * 100 + b"\r\n\r\nbody"
    assert _read_header_block(io.BytesIO(data), chunk=7, limit=50) == data[:50]
    assert _file_mail(data).header_block() == data[:-4]
    assert Mail(message=data).header_block() == data[:-4]


@pytest.mark.parametrize("head", [b"A: 1\n\n", b"A: 1\r\n\n", b"A: 1\r\n\r\n", b"\n"])
def test_the_first_empty_line_ends_the_block_whichever_line_end_follows(head):
    """An LF LF right before an LF CR LF, or a CRLF body after an LF-only header: the
    first empty line wins, as the stdlib parser sees it."""
    data = head + b"\r\nbody\r\n\n\r\nmore\r\n"
    assert Mail(message=data).header_block() == head
    assert Mail(message=data).header_names() == \
        [n.lower() for n in email.parser.BytesHeaderParser().parsebytes(data).keys()]
