"""SEARCH: the search program a client sends, and the test of one message against it
(RFC 3501 §6.4.4, CONDSTORE's MODSEQ key of RFC 7162 §3.1.5).

``parse_search`` turns the parser's tokens into a :class:`SearchProgram`; its
``matches(record)`` tells whether a message satisfies it, reading the message's header
or octets only when the program needs them (``.needs``). Header and text keys compare
case-insensitively against RFC 2047-decoded header values and against text parts with
their quoted-printable or base64 undone, within bounds.
"""

from __future__ import annotations

import datetime
import email.errors
import email.header
import email.utils
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Literal, Protocol, cast

from ..mail import MimeLimits
from .encoding import parse_date
from .errors import BadCommand, CommandRefused
from .mime import (
    DEFAULT_LIMITS,
    Part,
    decoded_body,
    header_end,
    header_fields,
    param,
    parse_structure,
    unfold,
)
from .sequence import SequenceSet, parse_set

__all__ = ["SearchProgram", "SearchRecord", "parse_search", "MAX_SEARCH_KEYS",
           "MAX_SEARCH_DEPTH", "TEXT_SEARCH_LIMIT", "BADCHARSET"]

Needs = Literal["meta", "headers", "full"]
Token = str | bytes | list["Token"]

# Keys in one program and nesting of NOT/OR/parentheses: more is answered BAD.
MAX_SEARCH_KEYS = 1000
MAX_SEARCH_DEPTH = 100
# Decoded text searched in one message by BODY and TEXT; what lies beyond is not seen.
TEXT_SEARCH_LIMIT = 16 * 1024 * 1024
# A decoded header value is compared up to this many characters.
_HEADER_VALUE_LIMIT = 64 * 1024
BADCHARSET = "BADCHARSET (US-ASCII UTF-8)"
_CHARSETS = {"US-ASCII", "UTF-8"}

_SEQUENCE = re.compile(r"[0-9*][0-9*:,]*")
_NUMBER = re.compile(r"[0-9]{1,20}")
_SYSTEM_FLAGS = {"ANSWERED": "\\Answered", "DELETED": "\\Deleted", "DRAFT": "\\Draft",
                 "FLAGGED": "\\Flagged", "SEEN": "\\Seen"}
_HEADER_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
_DATE_KEYS = ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE")
_RANK = {"meta": 0, "headers": 1, "full": 2}


class SearchRecord(Protocol):
    """One message as SEARCH sees it, with its mailbox's ``max_seq`` and ``max_uid``
    (what ``*`` stands for)."""

    seq: int
    uid: int
    flags: frozenset[str]
    size: int
    internal_date: float
    modseq: int
    recent: bool
    max_seq: int
    max_uid: int

    def headers(self) -> bytes: ...

    def full(self) -> bytes: ...


class _Message:
    """The record during one test: its octets read once, header values decoded once."""

    __slots__ = ("record", "limits", "_data", "_full", "_raw", "_decoded", "_text")

    def __init__(self, record: SearchRecord, limits: MimeLimits, full: bool):
        self.record = record
        self.limits = limits
        self._full = full
        self._data: bytes | None = None
        self._raw: dict[bytes, list[bytes]] | None = None
        self._decoded: dict[bytes, list[str]] = {}
        self._text: str | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.record.full() if self._full else self.record.headers()
        return self._data

    def header(self, name: bytes) -> list[str]:
        """The decoded, case-folded values of the fields named ``name``."""
        if self._raw is None:
            data = self.data
            self._raw = {}
            for field, s, e in header_fields(data, 0, header_end(data, 0, len(data))):
                value = data[data.index(b":", s, e) + 1:e][:_HEADER_VALUE_LIMIT]
                self._raw.setdefault(field, []).append(value)
        values = self._decoded.get(name)
        if values is None:
            values = self._decoded[name] = [decode_header_value(unfold(v))
                                            for v in self._raw.get(name, ())]
        return values

    def all_headers(self) -> str:
        self.header(b"")
        assert self._raw is not None        # filled by header()
        return "\n".join(v for n in list(self._raw) for v in self.header(n))

    def text(self) -> str:
        if self._text is None:
            self._text = _body_text(self.data, parse_structure(self.data, self.limits))
        return self._text


def decode_header_value(raw: bytes) -> str:
    """A header value with RFC 2047 encoded words decoded, case-folded; 8-bit octets
    read as UTF-8 (else Latin-1), as mail with SMTPUTF8 carries them."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if "=?" in text:
        try:
            text = str(email.header.make_header(email.header.decode_header(text)))
        except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
            pass
    return text.casefold()


def _charset_of(part: Part) -> str:
    charset = param(part.params, b"charset")
    return (charset or b"").decode("ascii", "replace").strip() or "us-ascii"


def _body_text(data: bytes, root: Part) -> str:
    """The decoded, case-folded text of the message's text parts (text/* leaves,
    also inside attached messages), at most TEXT_SEARCH_LIMIT octets of it."""
    out: list[str] = []
    budget = TEXT_SEARCH_LIMIT
    stack = [root]
    while stack and budget > 0:
        part = stack.pop()
        if part.children:
            stack.extend(reversed(part.children))
            continue
        if part.opaque or part.media[0].lower() != b"text":
            continue
        body = decoded_body(data, part)
        if body is None:
            continue
        body = body[:budget]
        budget -= len(body)
        try:
            out.append(body.decode(_charset_of(part), "replace"))
        except LookupError:
            out.append(body.decode("utf-8", "replace"))
    return "\n".join(out).casefold()


Test = Callable[[_Message], bool]


@dataclass(frozen=True)
class SearchProgram:
    """A parsed SEARCH program: ``matches(record)`` is its test."""

    test: Test
    needs: Needs
    uses_modseq: bool
    limits: MimeLimits = DEFAULT_LIMITS
    flags_only: bool = False

    def matches(self, record: SearchRecord) -> bool:
        return self.test(_Message(record, self.limits, self.needs == "full"))

    def matching_flags(self, flags: Sequence[frozenset[str]]) -> list[int]:
        """For a program that reads flags only (``flags_only``: flag and keyword keys,
        NOT, OR, lists): the indexes in ``flags`` of the messages it matches, the test
        run once per distinct flag set."""
        if not self.flags_only:
            raise ValueError("the program reads more than flags")
        verdicts: dict[frozenset[str], bool] = {}
        for f in set(flags):
            record = cast(SearchRecord, _FlagsOnly(f))
            verdicts[f] = self.test(_Message(record, self.limits, False))
        return list(compress(range(len(flags)), map(verdicts.__getitem__, flags)))


class _FlagsOnly:
    """The record a flags-only program is run on: the flags, nothing else."""

    __slots__ = ("flags",)

    def __init__(self, flags: frozenset[str]):
        self.flags = flags


class _Parser:
    def __init__(self, charset: str | None):
        self.charset = charset
        self.needs: Needs = "meta"
        self.uses_modseq = False
        self.flags_only = True          # no key but flag and keyword keys so far
        self.keys = 0

    def need(self, what: Needs) -> None:
        if _RANK[what] > _RANK[self.needs]:
            self.needs = what

    def string(self, token: Token, key: str) -> str:
        if isinstance(token, list):
            raise BadCommand(f"SEARCH {key} takes a string, not a list")
        if isinstance(token, str):
            return token.casefold()
        try:
            text = token.decode("ascii" if self.charset == "US-ASCII" else "utf-8")
        except UnicodeDecodeError:
            raise BadCommand(f"SEARCH {key}: the string is not valid "
                             f"{self.charset or 'UTF-8'}") from None
        return text.casefold()

    def atom(self, tokens: Sequence[Token], i: int, key: str) -> str:
        if i >= len(tokens):
            raise BadCommand(f"SEARCH {key} needs an argument")
        token = tokens[i]
        if isinstance(token, list):
            raise BadCommand(f"SEARCH {key} takes an atom, not a list")
        return token if isinstance(token, str) else token.decode("ascii", "replace")

    def arg(self, tokens: Sequence[Token], i: int, key: str) -> Token:
        if i >= len(tokens):
            raise BadCommand(f"SEARCH {key} needs an argument")
        return tokens[i]

    def program(self, tokens: Sequence[Token], depth: int) -> Test:
        if not tokens:
            raise BadCommand("SEARCH needs at least one search key")
        tests: list[Test] = []
        i = 0
        while i < len(tokens):
            test, i = self.key(tokens, i, depth)
            tests.append(test)
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda m: first(m) and second(m)

        def every(m: _Message) -> bool:
            for t in tests:
                if not t(m):
                    return False
            return True
        return every

    def key(self, tokens: Sequence[Token], i: int, depth: int) -> tuple[Test, int]:
        if depth > MAX_SEARCH_DEPTH:
            raise BadCommand(f"SEARCH nests deeper than {MAX_SEARCH_DEPTH} levels")
        self.keys += 1
        if self.keys > MAX_SEARCH_KEYS:
            raise BadCommand(f"SEARCH has more than {MAX_SEARCH_KEYS} keys")
        token = tokens[i]
        if isinstance(token, list):
            return self.program(token, depth + 1), i + 1
        if isinstance(token, bytes):
            raise BadCommand("SEARCH: a string where a search key was expected")
        name = token.upper()
        if _SEQUENCE.fullmatch(token):
            self.flags_only = False
            return _in_set(parse_set(token), uid=False), i + 1
        if name == "NOT":
            if i + 1 >= len(tokens):
                raise BadCommand("SEARCH NOT needs a search key")
            inner, j = self.key(tokens, i + 1, depth + 1)
            return (lambda m: not inner(m)), j
        if name == "OR":
            if i + 1 >= len(tokens):
                raise BadCommand("SEARCH OR needs two search keys")
            left, j = self.key(tokens, i + 1, depth + 1)
            if j >= len(tokens):
                raise BadCommand("SEARCH OR needs two search keys")
            right, k = self.key(tokens, j, depth + 1)
            return (lambda m: left(m) or right(m)), k
        simple = _flag_test(name)
        if simple is not None:
            if name in ("RECENT", "OLD", "NEW"):
                self.flags_only = False     # \\Recent is the session's, not a flag
            return simple, i + 1
        return self.key_with_args(tokens, i, name)

    def key_with_args(self, tokens: Sequence[Token], i: int, name: str) -> tuple[Test, int]:
        if name not in ("KEYWORD", "UNKEYWORD"):
            self.flags_only = False
        if name == "UID":
            return _in_set(parse_set(self.atom(tokens, i + 1, name)), uid=True), i + 2
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword = self.atom(tokens, i + 1, name).lower()
            has = _has_keyword(keyword)
            return (has if name == "KEYWORD" else (lambda m: not has(m))), i + 2
        if name in ("LARGER", "SMALLER"):
            n = _number(self.atom(tokens, i + 1, name), name)
            if name == "LARGER":
                return (lambda m: m.record.size > n), i + 2
            return (lambda m: m.record.size < n), i + 2
        if name in _DATE_KEYS:
            day = parse_date(self.arg(tokens, i + 1, name))
            if name.startswith("SENT"):
                self.need("headers")
                return _date_test(name[4:], day, _sent_date), i + 2
            return _date_test(name, day, _internal_date), i + 2
        if name in _HEADER_KEYS:
            self.need("headers")
            value = self.string(self.arg(tokens, i + 1, name), name)
            return _header_test(_HEADER_KEYS[name].encode(), value), i + 2
        if name == "HEADER":
            field = self.string(self.arg(tokens, i + 1, name), name)
            value = self.string(self.arg(tokens, i + 2, name), name)
            self.need("headers")
            return _header_test(field.encode("utf-8"), value), i + 3
        if name in ("BODY", "TEXT"):
            value = self.string(self.arg(tokens, i + 1, name), name)
            self.need("full")
            if name == "BODY":
                return (lambda m: value in m.text()), i + 2
            return (lambda m: value in m.all_headers() or value in m.text()), i + 2
        if name == "MODSEQ":
            return self.modseq(tokens, i)
        raise BadCommand(f"unknown SEARCH key {name[:40]!r}")

    def modseq(self, tokens: Sequence[Token], i: int) -> tuple[Test, int]:
        # MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162 §3.1.5); the
        # store keeps one modseq a message, so the entry is checked and not used
        self.uses_modseq = True
        j = i + 1
        if j < len(tokens) and isinstance(tokens[j], bytes):
            kind = self.atom(tokens, j + 1, "MODSEQ").lower()
            if kind not in ("priv", "shared", "all"):
                raise BadCommand("SEARCH MODSEQ entry type must be priv, shared or all")
            j += 2
        value = _number(self.atom(tokens, j, "MODSEQ"), "MODSEQ")
        return (lambda m: m.record.modseq >= value), j + 1


def _number(text: str, key: str) -> int:
    if not _NUMBER.fullmatch(text) or int(text) >= 2**63:
        raise BadCommand(f"SEARCH {key} takes a number, got {text[:20]!r}")
    return int(text)


def _flag_test(name: str) -> Test | None:
    if name == "ALL":
        return lambda m: True
    if name in _SYSTEM_FLAGS:
        flag = _SYSTEM_FLAGS[name]
        return lambda m: flag in m.record.flags
    if name.startswith("UN") and name[2:] in _SYSTEM_FLAGS:
        flag = _SYSTEM_FLAGS[name[2:]]
        return lambda m: flag not in m.record.flags
    if name == "RECENT":
        return lambda m: m.record.recent
    if name == "OLD":
        return lambda m: not m.record.recent
    if name == "NEW":
        return lambda m: m.record.recent and "\\Seen" not in m.record.flags
    return None


def _has_keyword(keyword: str) -> Test:
    return lambda m: any(f.lower() == keyword for f in m.record.flags)


def _in_set(seqset: SequenceSet, uid: bool) -> Test:
    resolved: list[tuple[int, Callable[[int], bool]]] = []    # (star, membership test)

    def test(m: _Message) -> bool:
        record = m.record
        star = record.max_uid if uid else record.max_seq
        if not resolved or resolved[0][0] != star:
            spans = seqset.resolved(star)
            if len(spans) == 1:
                lo, hi = spans[0]
                match: Callable[[int], bool] = lambda n: lo <= n <= hi  # noqa: E731
            else:
                match = seqset.matcher(star)
            resolved[:] = [(star, match)]
        return resolved[0][1](record.uid if uid else record.seq)
    return test


def _internal_date(m: _Message) -> datetime.date:
    return datetime.datetime.fromtimestamp(m.record.internal_date, datetime.UTC).date()


def _sent_date(m: _Message) -> datetime.date:
    """The day of the Date: field as written (its own zone); the internal date when
    the field is missing or unreadable, as Dovecot does."""
    values = m.header(b"date")
    if values:
        parsed = email.utils.parsedate_tz(values[0])
        if parsed is not None:
            try:
                return datetime.date(parsed[0], parsed[1], parsed[2])
            except ValueError:
                pass
    return _internal_date(m)


def _date_test(kind: str, day: datetime.date, of: Callable[[_Message], datetime.date]
               ) -> Test:
    if kind == "BEFORE":
        return lambda m: of(m) < day
    if kind == "ON":
        return lambda m: of(m) == day
    return lambda m: of(m) >= day


def _header_test(name: bytes, value: str) -> Test:
    field = name.lower()
    return lambda m: any(value in v for v in m.header(field))


def parse_search(tokens: Sequence[Token], charset: str | None = None,
                 limits: MimeLimits = DEFAULT_LIMITS) -> SearchProgram:
    """The search program of SEARCH's arguments. A leading ``CHARSET name`` in
    ``tokens`` is read like ``charset``; charsets other than US-ASCII and UTF-8 are
    refused with ``[BADCHARSET (US-ASCII UTF-8)]``; syntax errors are BadCommand.
    ``limits`` bound the MIME parse of BODY and TEXT (maxMimeParts, maxMimeDepth)."""
    tokens = list(tokens)
    if tokens and isinstance(tokens[0], str) and tokens[0].upper() == "CHARSET":
        if len(tokens) < 2 or isinstance(tokens[1], list):
            raise BadCommand("SEARCH CHARSET needs a charset name")
        name = tokens[1]
        charset = name if isinstance(name, str) else name.decode("ascii", "replace")
        tokens = tokens[2:]
    if charset is not None:
        charset = charset.upper()
        if charset not in _CHARSETS:
            raise CommandRefused(f"charset {charset[:40]} is not supported", BADCHARSET)
    parser = _Parser(charset)
    test = parser.program(tokens, 0)
    return SearchProgram(test, parser.needs, parser.uses_modseq, limits, parser.flags_only)
