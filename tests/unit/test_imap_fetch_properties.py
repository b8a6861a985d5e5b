"""FETCH rendering under Hypothesis, and BODY checked against Twisted's imap4."""

from __future__ import annotations

import email
import email.policy
import importlib.util
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.mail import imap4
from zope.interface import implementer

from mailet_mta.imap.errors import CommandRefused
from mailet_mta.imap.fetch import MessageMeta, parse_fetch_items, render
from tests.support.examples import examples
from tests.support.messages import corpus

META = MessageMeta(uid=1, flags=frozenset(), internal_date=0.0, size=0, modseq=1)


class Source:
    def __init__(self, data: bytes):
        self.data = data

    def headers(self) -> bytes:
        m = re.search(rb"\n\r?\n", self.data)
        return self.data if m is None else self.data[:m.end()]

    def full(self) -> bytes:
        return self.data


# --- an IMAP answer reader, enough to take rendered FETCH data apart ----------------

_ATOM = re.compile(rb"[^\s()\"{~\[]+(?:\[[^\]]*\][^\s()\"{~]*)?")


def read_sexp(data: bytes, pos: int = 0):
    """(value, next position): lists, strings (bytes), NIL (None), atoms (str)."""
    while data[pos:pos + 1] == b" ":
        pos += 1
    c = data[pos:pos + 1]
    if c == b"(":
        pos += 1
        items = []
        while True:
            while data[pos:pos + 1] == b" ":
                pos += 1
            if data[pos:pos + 1] == b")":
                return items, pos + 1
            value, pos = read_sexp(data, pos)
            items.append(value)
    if c == b'"':
        end = pos + 1
        out = bytearray()
        while data[end:end + 1] != b'"':
            if data[end:end + 1] == b"\\":
                end += 1
            out += data[end:end + 1]
            end += 1
        return bytes(out), end + 1
    if c in (b"{", b"~"):
        if c == b"~":
            pos += 1
        close = data.index(b"}\r\n", pos)
        n = int(data[pos + 1:close])
        return data[close + 3:close + 3 + n], close + 3 + n
    m = _ATOM.match(data, pos)
    assert m, data[pos:pos + 40]
    atom = m.group().decode()
    return (None if atom == "NIL" else atom), m.end()


def fetch_values(out: bytes) -> list:
    value, end = read_sexp(out)
    assert end == len(out)
    return value


# --- random messages -----------------------------------------------------------

header_names = st.sampled_from(["From", "To", "Cc", "Subject", "Date", "Message-ID",
                                "Content-Type", "Content-Transfer-Encoding", "X-Junk",
                                "Content-Disposition", "Reply-To", "Sender", "Bcc"])
header_values = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"multipart/mixed; boundary=b1", b"multipart/alternative; boundary=b2",
                     b"message/rfc822", b"text/plain; charset=utf-8", b"base64",
                     b"quoted-printable", b"a@b, (c) <d@e>, g: h@i;", b'"x" <y@z>',
                     b"=?utf-8?q?=C3=A9?=", b"attachment; filename*0*=x''a; filename*1=b",
                     b"multipart/mixed; boundary=\"\"", b"<", b"(((", b"\";"]))
line_end = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def messages(draw, depth=0):
    eol = draw(line_end)
    fields = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    head = b"".join(n.encode() + b": " + v + eol for n, v in fields)
    if depth < 3 and draw(st.booleans()):
        boundary = draw(st.sampled_from([b"b1", b"b2", b"x"]))
        head += b"Content-Type: multipart/mixed; boundary=" + boundary + eol
        parts = draw(st.lists(messages(depth + 1), max_size=3))
        body = b"".join(b"--" + boundary + eol + p + eol for p in parts)
        if draw(st.booleans()):
            body += b"--" + boundary + b"--" + eol
    else:
        body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        return head + eol + body
    return head + body


any_message = st.one_of(messages(), st.binary(max_size=400))

ALL_ITEMS = ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "ENVELOPE", "BODY",
             "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]",
             "BODY.PEEK[HEADER]", "BODY[TEXT]", "BODY[HEADER.FIELDS (From Subject)]",
             "BODY[HEADER.FIELDS.NOT (To)]", "BODY[1]", "BODY[1.MIME]", "BODY[1.HEADER]",
             "BODY[2.1.TEXT]", "BODY[1.2]", "BODY[]<3.7>"]


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(any_message)
def test_render_never_raises_and_is_well_formed(data):
    out = render(parse_fetch_items([ALL_ITEMS]), META, Source(data))
    values = fetch_values(out)
    assert len(values) == 2 * len(ALL_ITEMS)
    try:
        render(parse_fetch_items([["BINARY[1]", "BINARY.SIZE[2]"]]), META, Source(data))
    except CommandRefused as exc:
        assert exc.code == "UNKNOWN-CTE"


sections = st.sampled_from(["", "HEADER", "TEXT", "1", "2", "1.MIME", "2.1",
                            "HEADER.FIELDS (FROM CONTENT-TYPE)", "1.2.HEADER"])


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(any_message, sections, st.integers(0, 500), st.integers(1, 500))
def test_partial_is_python_slicing_of_the_section(data, section, origin, octets):
    whole = fetch_values(render(parse_fetch_items([f"BODY.PEEK[{section}]"]), META,
                                Source(data)))[1]
    part = fetch_values(render(parse_fetch_items([f"BODY.PEEK[{section}]<{origin}.{octets}>"]),
                               META, Source(data)))
    if whole is None:
        assert part[1] is None
    else:
        assert part[1] == whole[origin:origin + octets]
        assert part[0] == f"BODY[{section}]<{origin}>" or section.startswith("HEADER.FIELDS")


# --- cross-check with Twisted's imap4.getBodyStructure ---------------------------

@implementer(imap4.IMessagePart)
class StdlibPart:
    """A Twisted IMessagePart over the stdlib's parse of the same message."""

    def __init__(self, msg: email.message.Message):
        self.msg = msg

    def getHeaders(self, negate, *names):
        names_l = {n.lower() for n in names}
        return {k.lower(): v for k, v in self.msg.items()
                if (k.lower() in names_l) != negate}

    def _body(self) -> bytes:
        if self.msg.is_multipart():
            return b""
        payload = self.msg._payload     # as stored: get_payload() would decode 8-bit
        if isinstance(payload, list):           # message/rfc822
            return payload[0].as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
        return payload.encode("ascii", "surrogateescape")

    def getBodyFile(self):
        return io.BytesIO(self._body())

    def getSize(self):
        return len(self._body())

    def isMultipart(self):
        return self.msg.is_multipart() and self.msg.get_content_maintype() == "multipart"

    def getSubPart(self, part):
        payload = self.msg.get_payload()
        if not isinstance(payload, list) or part >= len(payload):
            raise IndexError(part)
        return StdlibPart(payload[part])


def shape_twisted(s):
    if isinstance(s[0], list):          # multipart: parts then subtype
        return ("multipart", s[-1].lower(), [shape_twisted(p) for p in s[:-1]])
    lines = s[7] if s[0].lower() == "text" else None
    return (s[0].lower(), s[1].lower(), s[6], lines)


def shape_ours(s):
    if isinstance(s[0], list):
        return ("multipart", s[len([p for p in s if isinstance(p, list)])].decode().lower(),
                [shape_ours(p) for p in s if isinstance(p, list)])
    lines = int(s[7]) if s[0].lower() == b"text" else None
    return (s[0].decode().lower(), s[1].decode().lower(), int(s[6]), lines)


def test_body_agrees_with_twisted_imap4_on_the_corpus():
    checked = 0
    for name, data in corpus().items():
        theirs = imap4.getBodyStructure(StdlibPart(email.message_from_bytes(data)), False)
        if theirs[0] is None:       # Twisted gives no type where the header has none
            continue
        ours = fetch_values(render(parse_fetch_items(["BODY"]), META, Source(data)))[1]
        assert shape_ours(ours) == shape_twisted(theirs), name
        checked += 1
    assert checked >= 4


@settings(max_examples=examples(100), suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["plain", "html"]),
                          st.lists(st.text("abc xyz", max_size=30), max_size=5)),
                min_size=1, max_size=4),
       st.sampled_from(["mixed", "alternative"]))
def test_body_agrees_with_twisted_imap4_on_multiparts(parts, subtype):
    body = b"".join(b"--B\r\nContent-Type: text/" + kind.encode() + b"; charset=us-ascii"
                    b"\r\n\r\n" + "\r\n".join(lines).encode() + b"\r\n" for kind, lines in parts)
    data = (b"Content-Type: multipart/" + subtype.encode() + b"; boundary=B\r\n\r\n" + body
            + b"--B--\r\n")
    theirs = imap4.getBodyStructure(StdlibPart(email.message_from_bytes(data)), False)
    ours = fetch_values(render(parse_fetch_items(["BODY"]), META, Source(data)))[1]
    assert shape_ours(ours) == shape_twisted(theirs)


def test_the_stdlib_email_test_messages_render():
    # CPython's own collection of odd real-world messages, where the install has it
    spec = importlib.util.find_spec("test.test_email")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("CPython's test.test_email data is not installed")
    files = sorted(Path(list(spec.submodule_search_locations)[0], "data").glob("msg_*.txt"))
    if not files:
        pytest.skip("CPython's test.test_email data is not installed")
    for path in files:
        data = path.read_bytes()
        values = fetch_values(render(parse_fetch_items([ALL_ITEMS]), META, Source(data)))
        assert len(values) == 2 * len(ALL_ITEMS), path.name
