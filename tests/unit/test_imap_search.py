"""SEARCH programs: every RFC 3501 key, OR/NOT/groups, MODSEQ, charsets, text search."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailet_mta.imap.errors import BadCommand, CommandRefused
from mailet_mta.imap.search import (
    BADCHARSET,
    MAX_SEARCH_DEPTH,
    MAX_SEARCH_KEYS,
    parse_search,
)
from tests.support.examples import examples
from tests.support.messages import corpus


def epoch(y, mo, d, h=12):
    return float(calendar.timegm((y, mo, d, h, 0, 0)))


@dataclass
class Record:
    data: bytes = b"Subject: x\r\n\r\nbody\r\n"
    seq: int = 1
    uid: int = 10
    flags: frozenset = frozenset()
    size: int = 100
    internal_date: float = epoch(2024, 1, 15)
    modseq: int = 5
    recent: bool = False
    max_seq: int = 3
    max_uid: int = 30
    reads: list = field(default_factory=list)

    def headers(self) -> bytes:
        self.reads.append("headers")
        end = self.data.find(b"\r\n\r\n")
        return self.data if end < 0 else self.data[:end + 4]

    def full(self) -> bytes:
        self.reads.append("full")
        return self.data


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def search(tokens, record, charset=None):
    return parse_search(tokens, charset).matches(record)


MAIL = crlf("""\
From: =?utf-8?q?J=C3=BCrgen?= <juergen@example.org>
To: Bob <bob@example.com>, carol@example.net
Cc: dave@example.com
Bcc: eve@example.com
Subject: =?iso-8859-1?q?Gr=FC=DFe?= from Munich
Date: Sun, 14 Jan 2024 23:30:00 -0800
X-Tag: Blue
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Sch=C3=B6ne Gr=C3=BC=C3=9Fe
--b
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+QmVyZ2UgdW5kIFNlZW48L3A+
--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

c2VjcmV0IGJpbmFyeQ==
--b--
""")


def rec(**kw) -> Record:
    return Record(data=MAIL, **kw)


@pytest.mark.parametrize("tokens, expected", [
    (["ALL"], True),
    (["FROM", b"j\xc3\xbcrgen"], True),          # RFC 2047 decoded, case-insensitive
    (["FROM", "JUERGEN@example"], True),
    (["FROM", "bob"], False),
    (["TO", "CAROL"], True),
    (["CC", "dave"], True),
    (["BCC", "eve@"], True),
    (["SUBJECT", b"gr\xc3\xbc\xc3\x9fe FROM"], True),
    (["HEADER", "x-tag", "blue"], True),
    (["HEADER", "X-TAG", ""], True),             # empty string: the field exists
    (["HEADER", "X-Other", ""], False),
    (["BODY", b"sch\xc3\xb6ne"], True),          # quoted-printable undone
    (["BODY", "berge und"], True),               # base64 text/html undone
    (["BODY", "secret"], False),                 # not a text part
    (["BODY", "munich"], False),                 # header, not body
    (["TEXT", "munich"], True),
    (["TEXT", "seen"], True),
    (["SENTON", "14-Jan-2024"], True),           # the Date: field's own day
    (["SENTBEFORE", "15-Jan-2024"], True),
    (["SENTSINCE", "15-Jan-2024"], False),
    (["ON", "15-Jan-2024"], True),               # internal date
    (["BEFORE", "15-Jan-2024"], False),
    (["SINCE", "15-Jan-2024"], True),
    (["SINCE", "16-Jan-2024"], False),
    (["LARGER", "99"], True),
    (["LARGER", "100"], False),
    (["SMALLER", "101"], True),
])
def test_search_keys(tokens, expected):
    assert search(tokens, rec()) is expected


@pytest.mark.parametrize("key, flags, expected", [
    ("SEEN", {"\\Seen"}, True), ("UNSEEN", {"\\Seen"}, False),
    ("ANSWERED", {"\\Answered"}, True), ("UNANSWERED", set(), True),
    ("DELETED", {"\\Deleted"}, True), ("UNDELETED", {"\\Deleted"}, False),
    ("DRAFT", {"\\Draft"}, True), ("UNDRAFT", set(), True),
    ("FLAGGED", set(), False), ("UNFLAGGED", set(), True),
])
def test_flag_keys(key, flags, expected):
    assert search([key], Record(flags=frozenset(flags))) is expected


def test_keywords_are_case_insensitive():
    r = Record(flags=frozenset({"$Forwarded", "\\Seen"}))
    assert search(["KEYWORD", "$forwarded"], r)
    assert not search(["UNKEYWORD", "$FORWARDED"], r)
    assert search(["UNKEYWORD", "other"], r)


def test_recent_new_old():
    assert search(["NEW"], Record(recent=True))
    assert not search(["NEW"], Record(recent=True, flags=frozenset({"\\Seen"})))
    assert search(["OLD"], Record(recent=False))
    assert search(["RECENT"], Record(recent=True))


def test_sequence_and_uid_sets_with_star():
    assert search(["2:*"], Record(seq=3, max_seq=3))
    assert not search(["2:*"], Record(seq=1))
    assert search(["*"], Record(seq=3, max_seq=3))
    assert search(["UID", "25:*"], Record(uid=30, max_uid=30))
    assert search(["UID", "40:*"], Record(uid=30, max_uid=30))     # n:* names the last
    assert not search(["UID", "1:9,11"], Record(uid=10))


def test_or_not_and_groups_nest():
    r = Record(flags=frozenset({"\\Seen"}), size=500)
    assert search(["OR", "DELETED", "SEEN"], r)
    assert not search(["NOT", "SEEN"], r)
    assert search(["NOT", "NOT", "SEEN"], r)
    assert search(["OR", ["DELETED", "SEEN"], ["LARGER", "400", "SEEN"]], r)
    assert not search(["OR", ["DELETED", "SEEN"], ["LARGER", "600", "SEEN"]], r)
    assert search(["SEEN", "OR", "NOT", "LARGER", "400", "UNDELETED"], r)
    assert not search(["SEEN", "DELETED"], r)


def test_modseq_key():
    program = parse_search(["MODSEQ", "5"])
    assert program.uses_modseq
    assert program.matches(Record(modseq=5)) and not program.matches(Record(modseq=4))
    assert parse_search(["MODSEQ", b"/flags/\\draft", "all", "620162338"]).uses_modseq
    with pytest.raises(BadCommand):
        parse_search(["MODSEQ", b"/flags/\\draft", "mine", "5"])
    assert not parse_search(["ALL"]).uses_modseq


def test_needs_says_what_is_read():
    assert parse_search(["SEEN", "UID", "1:5"]).needs == "meta"
    assert parse_search(["OR", "SEEN", "SUBJECT", "x"]).needs == "headers"
    assert parse_search(["SENTON", "1-Jan-2024"]).needs == "headers"
    assert parse_search(["NOT", "BODY", "x"]).needs == "full"
    r = Record()
    parse_search(["SEEN"]).matches(r)
    assert r.reads == []
    parse_search(["SUBJECT", "x", "FROM", "y"]).matches(r)
    assert r.reads == ["headers"]


def test_charsets():
    assert search(["CHARSET", "UTF-8", "SUBJECT", b"gr\xc3\xbc"], rec())
    assert search(["SUBJECT", b"gr\xc3\xbc"], rec(), charset="utf-8")
    with pytest.raises(CommandRefused) as err:
        parse_search(["CHARSET", "ISO-8859-1", "SUBJECT", b"x"])
    assert err.value.code == BADCHARSET == "BADCHARSET (US-ASCII UTF-8)"
    with pytest.raises(BadCommand):
        parse_search(["SUBJECT", b"gr\xc3\xbc"], "US-ASCII")
    with pytest.raises(BadCommand):
        parse_search(["SUBJECT", b"\xff"])


@pytest.mark.parametrize("tokens", [
    [], ["NOPE"], ["OR", "SEEN"], ["NOT"], ["SUBJECT"], ["HEADER", "x"], ["LARGER", "x"],
    ["LARGER", "-1"], ["SINCE", "2024-01-01"], ["UID", "x"], ["UID"], [[]], ["1:"],
    [b"SEEN"], ["KEYWORD"], ["MODSEQ"], ["MODSEQ", "x"], ["SUBJECT", ["a"]], ["CHARSET"],
    ["0"],
])
def test_bad_search_programs(tokens):
    with pytest.raises(BadCommand):
        parse_search(tokens)


def test_nesting_and_key_limits():
    parse_search(["NOT"] * (MAX_SEARCH_DEPTH - 1) + ["SEEN"])
    with pytest.raises(BadCommand, match="deeper"):
        parse_search(["NOT"] * (MAX_SEARCH_DEPTH + 1) + ["SEEN"])
    nested: list = ["SEEN"]
    for _ in range(MAX_SEARCH_DEPTH + 1):
        nested = [nested]
    with pytest.raises(BadCommand, match="deeper"):
        parse_search(nested)
    with pytest.raises(BadCommand, match="more than"):
        parse_search(["SEEN"] * (MAX_SEARCH_KEYS + 1))


def test_text_search_of_a_huge_message_is_bounded():
    data = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            + b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b"QUJD\r\n" * 1_000_000 + b"--b\r\n\r\nneedle\r\n" * 50_000 + b"--b--\r\n")
    t = time.perf_counter()
    assert search(["BODY", "needle"], Record(data=data))
    assert not search(["TEXT", "absent"], Record(data=data))
    assert time.perf_counter() - t < 5


def test_corpus_messages_are_found_by_subject_and_body():
    for name, data in corpus().items():
        r = Record(data=data)
        assert search(["TEXT", "example"], r), name
        assert not search(["BODY", "no such words anywhere"], r), name


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from([
    ["TEXT", "a"], ["BODY", b"\xc3\xa9"], ["HEADER", "content-type", "multipart"],
    ["SENTSINCE", "1-Jan-2000"], ["OR", "FROM", "x", "NOT", "SUBJECT", "=?"],
]))
def test_matching_never_raises_on_arbitrary_messages(data, tokens):
    assert search(tokens, Record(data=data)) in (True, False)


@settings(max_examples=examples(100))
@given(st.sets(st.sampled_from(["\\Seen", "\\Deleted", "\\Flagged", "$Junk"])),
       st.integers(1, 1000))
def test_not_is_the_complement(flags, size):
    r = Record(flags=frozenset(flags), size=size)
    for key in (["SEEN"], ["DELETED"], ["KEYWORD", "$junk"], ["LARGER", "500"],
                ["OR", "FLAGGED", "SMALLER", "10"]):
        assert search(["NOT", *key], r) is (not search(key, r))


@pytest.mark.parametrize("tokens,flags_only", [
    (["UNSEEN"], True), (["ALL"], True), (["KEYWORD", "work", "NOT", "DELETED"], True),
    (["OR", "SEEN", ["UNKEYWORD", "x", "FLAGGED"]], True), (["RECENT"], False),
    (["NEW"], False), (["UNSEEN", "1:3"], False), (["UID", "5"], False),
    (["LARGER", "10"], False), (["SUBJECT", "x"], False), (["MODSEQ", "3"], False)])
def test_programs_of_flags_only_are_known(tokens, flags_only):
    assert parse_search(tokens).flags_only is flags_only


def test_matching_flags_gives_what_matches_gives():
    sets = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "Work"}),
            frozenset({"\\Deleted"}), frozenset({"work", "\\Flagged"})]
    flags = [sets[(i * 7) % 5] for i in range(40)]
    for tokens in (["UNSEEN"], ["OR", "KEYWORD", "WORK", "DELETED"], ["NOT", ["SEEN"]],
                   ["FLAGGED", "UNDELETED"]):
        program = parse_search(tokens)
        want = [i for i, f in enumerate(flags) if program.matches(Record(flags=f))]
        assert program.matching_flags(flags) == want
    with pytest.raises(ValueError):
        parse_search(["RECENT"]).matching_flags(flags)
