"""FETCH items and their rendering: ENVELOPE, BODY/BODYSTRUCTURE, sections, partials."""

from __future__ import annotations

import time

import pytest

from mailet_mta.imap.errors import BadCommand, CommandRefused
from mailet_mta.imap.fetch import (
    MAX_FETCH_ITEMS,
    MessageMeta,
    parse_fetch_items,
    render,
)
from mailet_mta.imap.mime import DEFAULT_LIMITS, MAX_PARAMS, parse_structure
from mailet_mta.mail import MimeLimits
from tests.support.messages import corpus

META = MessageMeta(uid=7, flags=frozenset({"\\Seen"}), internal_date=837596665.0,
                   size=4286, modseq=12)


class Source:
    """A message held in memory; records what render() read."""

    def __init__(self, data: bytes):
        self.data = data
        self.calls: list[str] = []

    def headers(self) -> bytes:
        self.calls.append("headers")
        end = self.data.find(b"\r\n\r\n")
        return self.data if end < 0 else self.data[:end + 4]

    def full(self) -> bytes:
        self.calls.append("full")
        return self.data


def fetch(data: bytes, *items, meta: MessageMeta = META, limits=DEFAULT_LIMITS) -> bytes:
    request = parse_fetch_items([list(items)] if len(items) > 1 else [items[0]])
    return render(request, meta, Source(data), limits)


def lit(payload: bytes) -> bytes:
    return b"{%d}\r\n" % len(payload) + payload


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


RFC3501_HEADER = crlf("""\
Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

""")


def test_rfc3501_section8_fetch_full_example():
    data = RFC3501_HEADER + b"Hello\r\n"
    out = fetch(data, "FULL", meta=MessageMeta(12, frozenset({"\\Seen"}), 837596665.0, 4286))
    assert out == (
        b'(FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 09:44:25 +0000" RFC822.SIZE 4286 '
        b'ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" '
        b'"IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")'
        b'("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
        b'"<B27397-0100000@cac.washington.edu>") '
        b'BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1))')


def rfc3501_mixed() -> bytes:
    # RFC 3501 §7.4.2's BODYSTRUCTURE example: two text parts of 1152 octets / 23
    # lines and 4554 octets / 73 lines
    # lines, the last one without its line break (that belongs to the delimiter)
    first = (b"x" * 48 + b"\r\n") * 22 + b"x" * 52
    second = (b"y" * 60 + b"\r\n") * 72 + b"y" * 90
    assert (len(first), len(second)) == (1152, 4554)
    return crlf("""\
From: a@example.org
MIME-Version: 1.0
Content-Type: MULTIPART/MIXED; BOUNDARY="b1"

--b1

""") + first + crlf("""
--b1
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff
Content-ID: <960723163407.20117h@cac.washington.edu>
Content-Description: Compiler diff
Content-Transfer-Encoding: BASE64

""") + second + crlf("\n--b1--\n")


def test_rfc3501_body_example():
    assert fetch(rfc3501_mixed(), "BODY") == (
        b'(BODY (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) '
        b'"MIXED"))')


def test_bodystructure_extension_data():
    data = crlf("""\
Content-Type: multipart/mixed; boundary=zz
Content-Language: en, de
Content-Location: http://example.org/m

--zz
Content-Type: application/pdf; name="a b.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="a b.pdf"; size=3
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Language: fr

QUJD
--zz--
""")
    assert fetch(data, "BODYSTRUCTURE") == (
        b'(BODYSTRUCTURE (("application" "pdf" ("name" "a b.pdf") NIL NIL "base64" 4 '
        b'"Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename" "a b.pdf" "size" "3")) '
        b'("fr") NIL) "mixed" ("boundary" "zz") NIL ("en" "de") "http://example.org/m"))')


def test_text_part_without_extension_fields_has_nil_md5_and_disposition():
    out = fetch(crlf("Subject: x\n\nbody\n"), "BODYSTRUCTURE")
    assert out == (b'(BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 1 '
                   b'NIL NIL NIL NIL))')


def nested() -> bytes:
    inner = crlf("""\
From: Inner <inner@example.net>
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=
Content-Type: multipart/alternative; boundary=in

--in
Content-Type: text/plain

plain
--in
Content-Type: text/html

<p>html</p>
--in--
""")
    return crlf("""\
From: outer@example.org
Subject: outer
Content-Type: multipart/mixed; boundary=out

preamble
--out
Content-Type: text/plain

see attached
--out
Content-Type: message/rfc822
Content-Description: forwarded

""") + inner + crlf("""\
--out--
epilogue
""")


def test_nested_message_rfc822_sections():
    data = nested()
    assert fetch(data, "BODY.PEEK[2.HEADER]") == b"(BODY[2.HEADER] " + lit(
        b"From: Inner <inner@example.net>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Content-Type: multipart/alternative; boundary=in\r\n\r\n") + b")"
    assert fetch(data, "BODY[2.1]") == b"(BODY[2.1] {5}\r\nplain)"
    assert fetch(data, "BODY[2.2]") == b"(BODY[2.2] {11}\r\n<p>html</p>)"
    assert fetch(data, "BODY[2.2.MIME]") == (
        b"(BODY[2.2.MIME] " + lit(b"Content-Type: text/html\r\n\r\n") + b")")
    assert fetch(data, "BODY[2.MIME]") == b"(BODY[2.MIME] " + lit(
        b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n") + b")"
    assert fetch(data, "BODY[1]") == b"(BODY[1] {12}\r\nsee attached)"
    text = fetch(data, "BODY[2.TEXT]")
    assert text.startswith(b"(BODY[2.TEXT] {") and text.endswith(b"<p>html</p>\r\n--in--)")
    assert fetch(data, "BODY[2.2.HEADER.FIELDS (subject)]") == (
        b"(BODY[2.2.HEADER.FIELDS (subject)] {2}\r\n\r\n)")
    assert fetch(data, "BODY[3]") == b"(BODY[3] NIL)"
    assert fetch(data, "BODY[2.3]") == b"(BODY[2.3] NIL)"


def test_nested_message_bodystructure_has_envelope_body_and_lines():
    out = fetch(nested(), "BODYSTRUCTURE")
    assert b'("message" "rfc822" NIL NIL "forwarded" "7BIT" ' in out
    assert b'ENVELOPE' not in out
    assert (b'(NIL "=?utf-8?q?Gr=C3=BC=C3=9Fe?=" (("Inner" NIL "inner" "example.net"))'
            in out)                      # RFC 2047 words stay encoded
    assert (b'(("text" "plain" NIL NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)'
            b'("text" "html" NIL NIL NIL "7BIT" 11 1 NIL NIL NIL NIL) "alternative" '
            b'("boundary" "in") NIL NIL NIL) 13 NIL NIL NIL NIL) "mixed"') in out


def test_header_fields_case_insensitive_with_folding_and_blank_line():
    data = crlf("""\
From: a@example.org
X-Long: one
 two
subject: Hi
SUBJECT: again
To: b@example.org

body
""")
    assert fetch(data, "BODY.PEEK[HEADER.FIELDS (Subject x-long)]") == (
        b"(BODY[HEADER.FIELDS (Subject x-long)] "
        + lit(b"X-Long: one\r\n two\r\nsubject: Hi\r\nSUBJECT: again\r\n\r\n") + b")")
    assert fetch(data, 'BODY.PEEK[HEADER.FIELDS.NOT ("Subject" X-LONG FROM)]') == (
        b"(BODY[HEADER.FIELDS.NOT (Subject X-LONG FROM)] "
        + lit(b"To: b@example.org\r\n\r\n") + b")")
    assert fetch(data, "BODY.PEEK[HEADER.FIELDS (Nope)]") == (
        b"(BODY[HEADER.FIELDS (Nope)] {2}\r\n\r\n)")


def test_header_text_and_rfc822_items():
    data = crlf("A: 1\n\nbody\n")
    assert fetch(data, "BODY[HEADER]") == b"(BODY[HEADER] {8}\r\nA: 1\r\n\r\n)"
    assert fetch(data, "RFC822.HEADER") == b"(RFC822.HEADER {8}\r\nA: 1\r\n\r\n)"
    assert fetch(data, "BODY[TEXT]") == b"(BODY[TEXT] {6}\r\nbody\r\n)"
    assert fetch(data, "RFC822.TEXT") == b"(RFC822.TEXT {6}\r\nbody\r\n)"
    assert fetch(data, "RFC822") == b"(RFC822 {14}\r\n" + data + b")"
    assert fetch(data, "BODY[]") == b"(BODY[] {14}\r\n" + data + b")"
    assert fetch(data, "BODY[1]") == b"(BODY[1] {6}\r\nbody\r\n)"


def test_partial_rules():
    data = crlf("A: 1\n\n0123456789")
    assert fetch(data, "BODY[TEXT]<2.3>") == b"(BODY[TEXT]<2> {3}\r\n234)"
    assert fetch(data, "BODY[TEXT]<8.100>") == b"(BODY[TEXT]<8> {2}\r\n89)"
    # an origin beyond the end gives an empty string (RFC 3501 §6.4.5)
    assert fetch(data, "BODY[TEXT]<10.5>") == b"(BODY[TEXT]<10> {0}\r\n)"
    assert fetch(data, "BODY.PEEK[]<0.4>") == b"(BODY[]<0> {4}\r\nA: 1)"


def test_message_without_body():
    data = b"Subject: only a header\r\nFrom: a@example.org\r\n"
    assert fetch(data, "BODY[HEADER]") == b"(BODY[HEADER] {%d}\r\n%s)" % (len(data), data)
    assert fetch(data, "BODY[TEXT]") == b"(BODY[TEXT] {0}\r\n)"
    assert fetch(data, "BODYSTRUCTURE").endswith(b'"7BIT" 0 0 NIL NIL NIL NIL))')
    assert fetch(b"", "BODYSTRUCTURE").endswith(b'"7BIT" 0 0 NIL NIL NIL NIL))')
    assert b"ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)" in fetch(b"", "ENVELOPE")


def test_bare_lf_message():
    data = (b"From: a@example.org\nSubject: lf\nContent-Type: multipart/mixed; boundary=b\n\n"
            b"--b\nContent-Type: text/plain\n\none\ntwo\n--b\n\nthree\n--b--\n")
    assert fetch(data, "BODY[1]") == b"(BODY[1] {7}\r\none\ntwo)"
    assert fetch(data, "BODY[2]") == b"(BODY[2] {5}\r\nthree)"
    assert fetch(data, "BODY[1.MIME]") == b"(BODY[1.MIME] {26}\r\nContent-Type: text/plain\n\n)"
    assert fetch(data, "BODY[HEADER.FIELDS (SUBJECT)]") == (
        b"(BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: lf\r\n\r\n)")
    assert b'("text" "plain" NIL NIL NIL "7BIT" 7 2)' in fetch(data, "BODY")


def test_eight_bit_and_binary_content():
    eight = corpus()["eight-bit.eml"]
    out = fetch(eight, "BODY[TEXT]")
    assert out.endswith(eight[eight.index(b"\r\n\r\n") + 4:] + b")")
    binary = crlf("Content-Type: application/octet-stream\nContent-Transfer-Encoding: binary"
                  "\n\n") + bytes(range(256))
    # no NUL in a literal (RFC 3501 §4.3): sent as 0x80; BINARY has the true octets
    assert fetch(binary, "BODY[1]") == b"(BODY[1] {256}\r\n\x80" + bytes(range(1, 256)) + b")"
    assert fetch(binary, "BINARY[1]") == b"(BINARY[1] ~{256}\r\n" + bytes(range(256)) + b")"


def test_binary_decodes_base64_and_quoted_printable():
    data = corpus()["attachment-base64.eml"]
    out = fetch(data, "BINARY.PEEK[2]", "BINARY.SIZE[2]")
    body = bytes(range(256)) * 10
    assert out.startswith(b"(BINARY[2] ~{")
    assert body[:1000] in out
    assert fetch(data, "BINARY.SIZE[2]") == b"(BINARY.SIZE[2] %d)" % len(
        out.split(b"}\r\n", 1)[1].rsplit(b" BINARY.SIZE", 1)[0])
    qp = corpus()["multipart-alternative.eml"]
    assert fetch(qp, "BINARY[1]") == (
        b"(BINARY[1] " + lit("Grüße aus München\r\n".encode()) + b")")
    bad = crlf("Content-Transfer-Encoding: x-uuencode\n\nbegin\n")
    with pytest.raises(CommandRefused) as err:
        fetch(bad, "BINARY[1]")
    assert err.value.code == "UNKNOWN-CTE"


def test_envelope_addresses():
    data = crlf("""\
From: "Doe, \\"J\\"" <john@example.org>
Sender: (just a comment)
Reply-To:
To: undisclosed-recipients:;
Cc: Friends: Ed <ed@a.example>, joe@b.example;, last@c.example
Bcc: <@r1.example,@r2.example:route@d.example>, bare, mary@e.example (Mary Smith)
In-Reply-To: <x@y>

""")
    out = fetch(data, "ENVELOPE")
    john = b'(("Doe, \\"J\\"" NIL "john" "example.org"))'
    assert out == (
        b"(ENVELOPE (NIL NIL " + john + b" " + john + b" " + john +
        b' ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
        b' ((NIL NIL "Friends" NIL)("Ed" NIL "ed" "a.example")(NIL NIL "joe" "b.example")'
        b'(NIL NIL NIL NIL)(NIL NIL "last" "c.example"))'
        b' ((NIL "@r1.example,@r2.example" "route" "d.example")'
        b'(NIL NIL "bare" "MISSING_DOMAIN")("Mary Smith" NIL "mary" "e.example"))'
        b' "<x@y>" NIL))')


def test_envelope_reads_only_the_header():
    src = Source(RFC3501_HEADER + b"body")
    render(parse_fetch_items(["ENVELOPE"]), META, src)
    assert src.calls == ["headers"]
    src = Source(RFC3501_HEADER + b"body")
    render(parse_fetch_items([["UID", "FLAGS", "MODSEQ"]]), META, src)
    assert src.calls == []


def test_meta_items():
    out = fetch(b"", "UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ")
    assert out == (b'(UID 7 FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 09:44:25 +0000" '
                   b'RFC822.SIZE 4286 MODSEQ (12))')


def test_request_properties():
    r = parse_fetch_items([["FLAGS", "BODY.PEEK[HEADER]"]])
    assert (r.needs, r.sets_seen, r.wants_uid, r.wants_modseq) == ("headers", False, False,
                                                                   False)
    assert parse_fetch_items(["BODY[HEADER]"]).sets_seen
    assert parse_fetch_items(["RFC822"]).sets_seen
    assert not parse_fetch_items(["RFC822.HEADER"]).sets_seen
    assert parse_fetch_items(["BODY.PEEK[1]"]).needs == "full"
    assert parse_fetch_items(["fast"]).needs == "meta"
    assert parse_fetch_items(["ALL"]).needs == "headers"
    assert parse_fetch_items(["BODYSTRUCTURE"]).needs == "full"
    r = parse_fetch_items(["FLAGS"]).with_item("UID").with_item("MODSEQ")
    assert [i.name for i in r.items] == ["UID", "FLAGS", "MODSEQ"]
    assert r.wants_uid and r.wants_modseq
    assert r.with_item("UID") is r


@pytest.mark.parametrize("tokens", [
    ["BODY[HEADER.FIELDS]"], ["BODY[MIME]"], ["BODY[1.FOO]"], ["BODY[0]"], ["BODY[1]<5>"],
    ["BODY[1]<5.0>"], ["BINARY[HEADER]"], ["BODY[TEXT (A)]"], ["NOPE"], [[]], [b"FLAGS"],
    [["ALL"]], ["BODY[HEADER.FIELDS ()]"], ["BODY[HEADER.FIELDS (A:B)]"], ["BINARY.SIZE[1]<0.1>"],
])
def test_bad_fetch_items(tokens):
    with pytest.raises(BadCommand):
        parse_fetch_items(tokens)


def test_fetch_item_limit():
    parse_fetch_items([["FLAGS"] * MAX_FETCH_ITEMS])
    with pytest.raises(BadCommand, match="at most"):
        parse_fetch_items([["FLAGS"] * (MAX_FETCH_ITEMS + 1)])


def test_parameter_limit_and_rfc2231_continuations():
    params = "".join(f"; p{i}=v" for i in range(MAX_PARAMS + 10))
    data = crlf(f"Content-Type: text/plain{params}\n\nx")
    assert fetch(data, "BODY").count(b'"v"') == MAX_PARAMS
    data = crlf("Content-Type: application/x; title*0*=us-ascii'en'This%20is; title*1=\" ok\""
                "\n\nx")
    assert b"(\"title*\" \"us-ascii'en'This%20is ok\")" in fetch(data, "BODY")


def test_too_many_parts_become_one_opaque_leaf():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + \
        b"".join(b"--b\r\n\r\npart %d\r\n" % i for i in range(10)) + b"--b--\r\n"
    out = fetch(data, "BODY", limits=MimeLimits(max_parts=4))
    assert out.count(b'"7BIT" 6 1)') == 3
    assert b'("APPLICATION" "OCTET-STREAM" NIL NIL NIL "7BIT"' in out
    assert fetch(data, "BODY[4]", limits=MimeLimits(max_parts=4)).endswith(b"part 9)")


def test_too_deep_nesting_becomes_opaque():
    depth = 8
    data = b""
    for level in reversed(range(depth)):
        data = (b"Content-Type: multipart/mixed; boundary=l%d\r\n\r\n--l%d\r\n" % (level, level)
                + (data or b"\r\nleaf") + b"\r\n--l%d--\r\n" % level)
    tree = parse_structure(data, MimeLimits(max_depth=3))
    assert tree.children[0].children[0].opaque
    out = fetch(data, "BODYSTRUCTURE", limits=MimeLimits(max_depth=3))
    assert out.count(b'"APPLICATION" "OCTET-STREAM"') == 1
    assert fetch(data, "BODYSTRUCTURE").count(b"leaf") == 0


def test_hundred_thousand_parts_render_in_bounded_time():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + \
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 100_000 + b"--b--\r\n"
    t = time.perf_counter()
    out = fetch(data, "BODYSTRUCTURE", "BODY[99999]")
    assert time.perf_counter() - t < 5
    assert out.count(b'"text" "plain"') == MimeLimits().max_parts - 1
    assert out.endswith(b"BODY[99999] NIL)")


def test_twenty_megabyte_header_renders_in_bounded_time():
    # fields are looked up in the first HEADER_BLOCK_LIMIT octets: T5 is, the rest not
    folded = b"X-Big: " + b"a" * 70 + b"".join(b"\r\n " + b"b" * 70 for _ in range(280_000))
    tiny = b"".join(b"T%d: v\r\n" % i for i in range(100_000))
    data = b"Subject: big\r\n" + tiny + folded + b"\r\n\r\nbody\r\n"
    assert len(data) > 20_000_000
    t = time.perf_counter()
    out = fetch(data, "ENVELOPE", "BODYSTRUCTURE", "BODY[HEADER.FIELDS (SUBJECT T5)]",
                "BODY[TEXT]")
    assert time.perf_counter() - t < 5
    assert b"Subject: big\r\nT5: v\r\n\r\n" in out
    assert out.endswith(b"BODY[TEXT] {6}\r\nbody\r\n)")


def test_corpus_messages_render():
    for name, data in corpus().items():
        out = fetch(data, "FLAGS", "ENVELOPE", "BODYSTRUCTURE", "BODY.PEEK[]", "BODY[1]")
        assert out.startswith(b"(FLAGS"), name
        assert b"BODY[] {%d}\r\n" % len(data) + data in out, name


def test_binary_of_damaged_base64_is_decoded_leniently():
    data = crlf("Content-Transfer-Encoding: base64\n\nQUJD\nRA=\n!!=\n")
    assert fetch(data, "BINARY[1]") == b"(BINARY[1] {4}\r\nABCD)"


def test_hostile_nesting_with_near_miss_delimiters_is_bounded():
    # 99 nested multiparts, boundaries a, aa, aaa…, around 18 MB of lines that each
    # level's delimiter search must pass over: the scan budget keeps it linear
    heads = [b"Content-Type: multipart/mixed; boundary=%s\r\n\r\n--%s\r\n" % (b"a" * n,
                                                                              b"a" * n)
             for n in range(1, 100)]
    tails = [b"\r\n--%s--\r\n" % (b"a" * n) for n in reversed(range(1, 100))]
    leaf = b"\r\n" + (b"--" + b"a" * 120 + b"x\r\n") * 150_000
    data = b"".join(heads) + leaf + b"".join(tails)
    t = time.perf_counter()
    tree = parse_structure(data)
    out = fetch(data, "BODYSTRUCTURE")
    assert time.perf_counter() - t < 5
    depth, part = 0, tree
    while part.children:
        part, depth = part.children[0], depth + 1
    assert part.opaque and 1 < depth < 99
    assert out.count(b'"APPLICATION" "OCTET-STREAM"') == 1


def test_depth_is_capped_whatever_the_configuration():
    from mailet_mta.imap.mime import DEPTH_CAP
    levels = DEPTH_CAP + 50
    data = b"".join(b"Content-Type: multipart/mixed; boundary=l%d\r\n\r\n--l%d\r\n" % (n, n)
                    for n in range(levels)) + b"\r\nleaf" + b"".join(
        b"\r\n--l%d--\r\n" % n for n in reversed(range(levels)))
    out = fetch(data, "BODYSTRUCTURE", limits=MimeLimits(max_parts=10_000, max_depth=10_000))
    assert out.count(b'"APPLICATION" "OCTET-STREAM"') == 1


def test_envelope_address_list_limit():
    from mailet_mta.imap.envelope import MAX_ADDRESSES, parse_addresses
    value = b", ".join(b"u%d@example.org" % i for i in range(MAX_ADDRESSES + 50))
    t = time.perf_counter()
    found = parse_addresses(value)
    assert time.perf_counter() - t < 5
    assert len(found) == MAX_ADDRESSES
    assert found[-1] == (None, None, b"u%d" % (MAX_ADDRESSES - 1), b"example.org")


def test_header_of_a_message_two_levels_down():
    # BODY[1.2.HEADER]: part 2 of the multipart that is part 1 is a message/rfc822
    data = crlf("""\
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/mixed; boundary=inner

--inner
Content-Type: text/plain

first
--inner
Content-Type: message/rfc822

Subject: deep
From: deep@example.org

deep body
--inner--
--outer--
""")
    assert fetch(data, "BODY[1.2.HEADER]") == (
        b"(BODY[1.2.HEADER] " + lit(b"Subject: deep\r\nFrom: deep@example.org\r\n\r\n") + b")")
    assert fetch(data, "BODY[1.2.TEXT]") == b"(BODY[1.2.TEXT] {9}\r\ndeep body)"
    assert fetch(data, "BODY[1.2.1]") == b"(BODY[1.2.1] {9}\r\ndeep body)"
    assert b'(NIL "deep" (' in fetch(data, "BODYSTRUCTURE")


def test_part_headers_without_a_blank_line_and_empty_parts():
    # a part whose body starts without a blank line (read as the stdlib parser reads
    # it), an empty part between two delimiters, and a header ending at a delimiter
    data = (b"Content-Type: multipart/mixed; boundary=foo\n\n--foo\nContent-Type: text/plain\n"
            b"bar\n\n--foo\n--foo\nContent-Type: text/html\n--foo--\n")
    out = fetch(data, "BODY", "BODY[1]", "BODY[2]", "BODY[3.MIME]", "BODY[3]")
    assert out == (b'(BODY (("text" "plain" NIL NIL NIL "7BIT" 4 1)'
                   b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)'
                   b'("text" "html" NIL NIL NIL "7BIT" 0 0) "mixed") '
                   b'BODY[1] {4}\r\nbar\n BODY[2] {0}\r\n BODY[3.MIME] {23}\r\n'
                   b'Content-Type: text/html BODY[3] {0}\r\n)')


def test_rfc2231_encoded_boundary_and_charset():
    data = crlf("""\
Content-Type: multipart/signed; protocol*=us-ascii''application%2Fpgp-signature;
\tboundary*="us-ascii''Ee%51f"

--EeQf
Content-Type: text/plain; charset*=us-ascii''utf-8

signed
--EeQf--
""")
    assert fetch(data, "BODY[1]") == b"(BODY[1] {6}\r\nsigned)"
    assert b'"boundary*" "us-ascii\'\'Ee%51f")' in fetch(data, "BODYSTRUCTURE")


@pytest.mark.parametrize("items", ["(UID FLAGS RFC822.SIZE INTERNALDATE)", "FAST",
                                   "(MODSEQ INTERNALDATE UID)", "FLAGS"])
def test_meta_rows_are_what_render_gives(items):
    from mailet_mta.imap.fetch import render_meta_rows

    request = parse_fetch_items([items[1:-1].split()] if items.startswith("(") else [items])
    flags = [frozenset(), frozenset({"\\Seen", "b", "A"}), frozenset({"\\Seen"})]
    rows = [(s, 10 + s, flags[s % 3], 837596665.0 + 3600 * s, 100 * s, 5 * s)
            for s in (1, 2, 3, 9)]
    seqs, uids, fl, dates, sizes, modseqs = (list(c) for c in zip(*rows))
    out = render_meta_rows(request, seqs, uids, fl, dates, sizes, modseqs)
    want = b"".join(b"* %d FETCH %s\r\n" % (s, render(request, MessageMeta(u, f, d, z, m),
                                                        None))
                    for s, u, f, d, z, m in rows)
    assert out == want


def test_meta_rows_refuse_a_request_that_reads_the_message():
    from mailet_mta.imap.fetch import render_meta_rows

    with pytest.raises(ValueError):
        render_meta_rows(parse_fetch_items(["ENVELOPE"]), [1], [1], [frozenset()], [0.0],
                         [1], [1])
