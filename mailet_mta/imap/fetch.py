"""FETCH: the data items a client asks for, and the answer for one message
(RFC 3501 §6.4.5 and §7.4.2, CONDSTORE's MODSEQ of RFC 7162, BINARY of RFC 3516).

``parse_fetch_items`` turns the parser's tokens into a :class:`FetchRequest`; ``render``
builds the parenthesised FETCH data of one message from its :class:`MessageMeta` and
its octets. Both are pure: ``render`` is CPU work (a bounded MIME parse) and belongs on
a worker thread, not the reactor.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from ..mail import MimeLimits
from .encoding import format_flags, format_internal_date, format_internal_dates, nstring
from .envelope import envelope
from .errors import BadCommand, CommandRefused
from .mime import (
    DEFAULT_LIMITS,
    Part,
    decoded_body,
    header_end,
    header_fields,
    parse_disposition,
    parse_structure,
)

__all__ = ["FetchItem", "FetchRequest", "MessageMeta", "MessageSource", "parse_fetch_items",
           "render", "render_meta_rows", "body_structure", "text_literal", "MAX_FETCH_ITEMS",
           "MAX_HEADER_NAMES"]

Needs = Literal["meta", "headers", "full"]
_RANK: dict[str, int] = {"meta": 0, "headers": 1, "full": 2}

# Items in one FETCH, and names in one HEADER.FIELDS list: more is answered BAD.
MAX_FETCH_ITEMS = 256
MAX_HEADER_NAMES = 512

_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE: dict[str, Needs] = {
    "UID": "meta", "FLAGS": "meta", "INTERNALDATE": "meta", "RFC822.SIZE": "meta",
    "MODSEQ": "meta", "ENVELOPE": "headers", "RFC822.HEADER": "headers",
    "RFC822": "full", "RFC822.TEXT": "full", "BODY": "full", "BODYSTRUCTURE": "full",
}
_SECTION_ITEM = re.compile(r"(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\]"
                           r"(?:<([0-9]+)\.([0-9]+)>)?", re.I)
_PART_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
_TEXT_SPECS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")
_FIELD_NAME = re.compile(r'"?([\x21-\x39\x3b-\x7e]+?)"?')
_LF_WITHOUT_CR = re.compile(rb"(?<!\r)\n")

Token = str | bytes | list["Token"]


@dataclass(frozen=True)
class FetchItem:
    """One data item. ``name`` is the upper-case item (``BODY`` for BODY and
    BODY.PEEK sections, ``BINARY``, ``BINARY.SIZE``); for a section, ``section`` is
    true and ``part`` the part numbers, ``text`` the section text (``HEADER``,
    ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT``, ``MIME`` or ``""``), ``fields``
    the lower-case field names, ``partial`` (origin, octets) or None."""

    name: str
    section: bool = False
    peek: bool = False
    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()
    field_labels: tuple[str, ...] = ()
    partial: tuple[int, int] | None = None

    @property
    def needs(self) -> Needs:
        if not self.section:
            return _SIMPLE[self.name]
        if self.name == "BODY" and not self.part and self.text.startswith("HEADER"):
            return "headers"
        return "full"

    @property
    def sets_seen(self) -> bool:
        return (self.section and not self.peek and self.name != "BINARY.SIZE") or \
            self.name in ("RFC822", "RFC822.TEXT")

    def label(self) -> bytes:
        """The item's name in the answer (PEEK dropped, partial as ``<origin>``)."""
        if not self.section:
            return self.name.encode("ascii")
        spec = ".".join(str(n) for n in self.part)
        if self.text:
            spec = f"{spec}.{self.text}" if spec else self.text
        if self.field_labels:
            spec += " (" + " ".join(self.field_labels) + ")"
        origin = f"<{self.partial[0]}>" if self.partial else ""
        return f"{self.name}[{spec}]{origin}".encode()


@dataclass(frozen=True)
class FetchRequest:
    """The parsed items of one FETCH, in the client's order."""

    items: tuple[FetchItem, ...]
    needs: Needs = field(init=False)
    sets_seen: bool = field(init=False)
    wants_modseq: bool = field(init=False)
    wants_uid: bool = field(init=False)

    def __post_init__(self) -> None:
        needs: Needs = max((i.needs for i in self.items), key=_RANK.__getitem__,
                           default="meta")
        object.__setattr__(self, "needs", needs)
        object.__setattr__(self, "sets_seen", any(i.sets_seen for i in self.items))
        object.__setattr__(self, "wants_modseq", any(i.name == "MODSEQ" for i in self.items))
        object.__setattr__(self, "wants_uid", any(i.name == "UID" for i in self.items))

    def with_item(self, name: str) -> FetchRequest:
        """This request with the simple item ``name`` (``UID`` for UID FETCH, ``MODSEQ``
        for CHANGEDSINCE, ``FLAGS`` after an implicit \\Seen) added unless present;
        ``UID`` goes first, the others last."""
        if any(i.name == name and not i.section for i in self.items):
            return self
        item = FetchItem(name)
        items = (item, *self.items) if name == "UID" else (*self.items, item)
        return replace(self, items=items)


@dataclass(frozen=True)
class MessageMeta:
    """What the store knows of a message without reading it."""

    uid: int
    flags: frozenset[str]
    internal_date: float
    size: int
    modseq: int = 0


class MessageSource(Protocol):
    """The octets of one message, read only as far as ``FetchRequest.needs`` says."""

    def headers(self) -> bytes: ...

    def full(self) -> bytes: ...


def _section_item(text: str) -> FetchItem:
    m = _SECTION_ITEM.fullmatch(text)
    if not m:
        raise BadCommand(f"invalid FETCH item {text[:80]!r}")
    name = m.group(1).upper()
    peek = name.endswith(".PEEK")
    name = name.removesuffix(".PEEK")
    spec = m.group(2)
    partial = None
    if m.group(3) is not None:
        octets = int(m.group(4))
        if name == "BINARY.SIZE" or octets == 0:
            raise BadCommand(f"invalid partial in {text[:80]!r}: <origin.octets>, octets > 0")
        partial = (int(m.group(3)), octets)
    labels: tuple[str, ...] = ()
    if " " in spec:
        spec, _, names = spec.partition(" ")
        if not (names.startswith("(") and names.endswith(")")):
            raise BadCommand(f"invalid header list in {text[:80]!r}")
        words = names[1:-1].split()
        if not words or len(words) > MAX_HEADER_NAMES:
            raise BadCommand(f"header list needs 1 to {MAX_HEADER_NAMES} field names")
        for w in words:
            if not _FIELD_NAME.fullmatch(w):
                raise BadCommand(f"invalid header field name {w[:40]!r}")
        labels = tuple(w.strip('"') for w in words)
    part: list[int] = []
    pieces = spec.split(".") if spec else []
    while pieces and _PART_NUMBER.fullmatch(pieces[0]):
        part.append(int(pieces.pop(0)))
    section_text = ".".join(pieces).upper()
    if section_text and section_text not in _TEXT_SPECS:
        raise BadCommand(f"invalid section {spec[:60]!r} in {text[:80]!r}")
    if section_text == "MIME" and not part:
        raise BadCommand("MIME needs a part number (e.g. BODY[1.MIME])")
    if section_text.startswith("HEADER.FIELDS") != bool(labels):
        raise BadCommand(f"HEADER.FIELDS and only it takes a header list: {text[:80]!r}")
    if name != "BODY" and section_text:
        raise BadCommand(f"{name} takes part numbers only: {text[:80]!r}")
    return FetchItem(name, True, peek, tuple(part), section_text,
                     tuple(x.lower() for x in labels), labels, partial)


def _item(token: Token) -> FetchItem:
    if not isinstance(token, str):
        raise BadCommand("FETCH items are atoms such as FLAGS or BODY.PEEK[HEADER]")
    upper = token.upper()
    if upper in _SIMPLE:
        return FetchItem(upper)
    if "[" in token:
        return _section_item(token)
    raise BadCommand(f"unknown FETCH item {token[:40]!r}")


def parse_fetch_items(tokens: Token | Sequence[Token]) -> FetchRequest:
    """The FETCH items from the parser's tokens: one atom (an item or the macros ALL,
    FAST, FULL), a list of items, or a sequence holding one of those."""
    if isinstance(tokens, (list, tuple)) and len(tokens) == 1 and \
            isinstance(tokens[0], (str, list)):
        tokens = tokens[0]
    if isinstance(tokens, str):
        macro = _MACROS.get(tokens.upper())
        items = [FetchItem(n) for n in macro] if macro else [_item(tokens)]
    elif isinstance(tokens, list):
        if not tokens:
            raise BadCommand("FETCH needs at least one item")
        if len(tokens) > MAX_FETCH_ITEMS:
            raise BadCommand(f"FETCH takes at most {MAX_FETCH_ITEMS} items")
        items = [_item(t) for t in tokens]
    else:
        raise BadCommand("FETCH needs an item or a parenthesised list of items")
    return FetchRequest(tuple(items))


# ---------------------------------------------------------------------------
# BODY and BODYSTRUCTURE

def _params(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(nstring(k) + b" " + nstring(v) for k, v in params) + b")"


def _extension(f: dict[bytes, bytes]) -> list[bytes]:
    dsp = parse_disposition(f.get(b"content-disposition"))
    dsp_out = b"NIL" if dsp is None else b"(" + nstring(dsp[0]) + b" " + _params(dsp[1]) + b")"
    langs = [t.strip() for t in f.get(b"content-language", b"").split(b",") if t.strip()]
    lang = b"(" + b" ".join(nstring(t) for t in langs) + b")" if langs else b"NIL"
    return [dsp_out, lang, nstring(f.get(b"content-location"))]


def _lines(data: bytes, start: int, end: int) -> int:
    if start >= end:
        return 0
    return data.count(b"\n", start, end) + (data[end - 1] != 0x0A)


def body_structure(data: bytes, part: Part, extended: bool) -> bytes:
    """BODY (``extended`` false) or BODYSTRUCTURE of ``part`` (RFC 3501 §7.4.2)."""
    f = part.fields
    if part.is_multipart and not part.opaque:
        out = [b"".join(body_structure(data, c, extended) for c in part.children),
               nstring(part.media[1])]
        if extended:
            out += [_params(part.params), *_extension(f)]
        return b"(" + b" ".join(out) + b")"
    if part.opaque:
        media, params = (b"APPLICATION", b"OCTET-STREAM"), []
    else:
        media, params = part.media, part.params
    out = [nstring(media[0]), nstring(media[1]), _params(params),
           nstring(f.get(b"content-id")), nstring(f.get(b"content-description")),
           nstring(f.get(b"content-transfer-encoding", b"7BIT")),
           b"%d" % (part.end - part.body_start)]
    if part.is_message:
        inner = part.children[0]
        out += [envelope(data, inner.start, inner.body_start),
                body_structure(data, inner, extended),
                b"%d" % _lines(data, part.body_start, part.end)]
    elif media[0].lower() == b"text":
        out.append(b"%d" % _lines(data, part.body_start, part.end))
    if extended:
        out += [nstring(f.get(b"content-md5")), *_extension(f)]
    return b"(" + b" ".join(out) + b")"


# ---------------------------------------------------------------------------
# Sections

class _Message:
    """One message's octets and, parsed on first use, its part tree."""

    def __init__(self, data: bytes, limits: MimeLimits, headers_only: bool):
        self.data = data
        self.limits = limits
        self.headers_only = headers_only
        self._tree: Part | None = None

    @property
    def tree(self) -> Part:
        if self._tree is None:
            if self.headers_only:
                end = header_end(self.data, 0, len(self.data))
                self._tree = Part(0, end, len(self.data))
            else:
                self._tree = parse_structure(self.data, self.limits)
        return self._tree

    def top(self) -> Part:
        """The root without parsing the body (enough for HEADER and TEXT)."""
        if self._tree is None:
            end = header_end(self.data, 0, len(self.data))
            return Part(0, end, len(self.data))
        return self._tree

    def find(self, numbers: tuple[int, ...]) -> Part | None:
        part: Part | None = self.tree
        for n in numbers:
            if part is None:
                return None
            part = part.child(n)
        return part


def _header_subset(data: bytes, part: Part, item: FetchItem) -> bytes:
    wanted = {n.encode("latin-1") for n in item.fields}
    keep = item.text == "HEADER.FIELDS"
    out = []
    for name, s, e in header_fields(data, part.start, part.body_start):
        if (name in wanted) == keep:
            raw = _LF_WITHOUT_CR.sub(b"\r\n", data[s:e])
            out.append(raw if raw.endswith(b"\n") else raw + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def _decoded(data: bytes, part: Part) -> bytes:
    body = decoded_body(data, part)
    if body is None:
        raise CommandRefused("the part's Content-Transfer-Encoding is unknown", "UNKNOWN-CTE")
    return body


def _section(msg: _Message, item: FetchItem) -> bytes | None:
    data = msg.data
    if item.name.startswith("BINARY"):
        if not item.part:
            return data
        part = msg.find(item.part)
        return None if part is None else _decoded(data, part)
    if not item.part:
        if not item.text:
            return data
        part = msg.top()
    else:
        found = msg.find(item.part)
        if found is None:
            return None
        if not item.text:
            return data[found.body_start:found.end]
        if item.text == "MIME":
            return data[found.start:found.body_start]
        part = found.inner
    if item.text == "HEADER":
        return data[part.start:part.body_start]
    if item.text == "TEXT":
        return data[part.body_start:part.end]
    return _header_subset(data, part, item)


def text_literal(data: bytes) -> bytes:
    """A literal of message text. A literal may not carry NUL (RFC 3501 §4.3); a NUL in
    a stored message is sent as 0x80, as Dovecot does (BINARY gives the true octets)."""
    if b"\x00" in data:
        data = data.replace(b"\x00", b"\x80")
    return b"{%d}\r\n" % len(data) + data


def _literal(data: bytes) -> bytes:
    prefix = b"~" if b"\x00" in data else b""
    return prefix + b"{%d}\r\n" % len(data) + data


def _render_section(msg: _Message, item: FetchItem) -> bytes:
    data = _section(msg, item)
    if item.name == "BINARY.SIZE":
        return item.label() + b" %d" % (0 if data is None else len(data))
    if data is None:
        return item.label() + b" NIL"
    if item.partial is not None:
        origin, octets = item.partial
        data = data[origin:origin + octets]
    if item.name == "BINARY":
        return item.label() + b" " + _literal(data)
    return item.label() + b" " + text_literal(data)


def _render_item(item: FetchItem, meta: MessageMeta, msg: _Message | None) -> bytes:
    name = item.name
    if name == "UID":
        return b"UID %d" % meta.uid
    if name == "FLAGS":
        return b"FLAGS " + format_flags(meta.flags)
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + format_internal_date(meta.internal_date)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % meta.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % meta.modseq
    assert msg is not None      # render() reads the message for every other item
    data = msg.data
    if item.section:
        return _render_section(msg, item)
    if name == "ENVELOPE":
        top = msg.top()
        return b"ENVELOPE " + envelope(data, top.start, top.body_start)
    if name in ("BODY", "BODYSTRUCTURE"):
        return name.encode() + b" " + body_structure(data, msg.tree, name == "BODYSTRUCTURE")
    if name == "RFC822":
        return b"RFC822 " + text_literal(data)
    top = msg.top()
    if name == "RFC822.HEADER":
        chunk = data[top.start:top.body_start]
    else:
        chunk = data[top.body_start:top.end]
    return name.encode() + b" " + text_literal(chunk)


def render(request: FetchRequest, meta: MessageMeta, source: MessageSource,
           limits: MimeLimits = DEFAULT_LIMITS) -> bytes:
    """The parenthesised FETCH data of one message, items in the request's order,
    e.g. ``(UID 5 FLAGS (\\Seen) BODY[HEADER] {123}\\r\\n…)``. ``source`` is read as
    ``request.needs`` says; ``limits`` bound the MIME parse (the spool manager's
    maxMimeParts and maxMimeDepth). Raises CommandRefused (``UNKNOWN-CTE``) for
    BINARY of a part in an encoding it cannot undo."""
    msg = None
    if request.needs == "full":
        msg = _Message(source.full(), limits, headers_only=False)
    elif request.needs == "headers":
        msg = _Message(source.headers(), limits, headers_only=True)
    return b"(" + b" ".join(_render_item(i, meta, msg) for i in request.items) + b")"


_META_FORMS = {"UID": b"UID %d", "FLAGS": b"FLAGS %s", "INTERNALDATE": b"INTERNALDATE %s",
               "RFC822.SIZE": b"RFC822.SIZE %d", "MODSEQ": b"MODSEQ (%d)"}


def render_meta_rows(request: FetchRequest, seqs: Sequence[int], uids: Sequence[int],
                     flags: Sequence[frozenset[str]], dates: Sequence[float],
                     sizes: Sequence[int], modseqs: Sequence[int]) -> bytes:
    """The untagged FETCH responses (``* seq FETCH (…)\r\n`` each) of a request that
    needs no message octets (``request.needs == "meta"``), from parallel columns of
    the folder's metadata: one format per request, flag lists and dates formatted once
    per distinct value. The same octets as :func:`render` gives message by message."""
    if request.needs != "meta":
        raise ValueError("render_meta_rows is for requests that read no message")
    line = b"* %d FETCH (" + b" ".join(_META_FORMS[i.name] for i in request.items) + b")\r\n"
    columns: list[Sequence[object]] = [seqs]
    for item in request.items:
        name = item.name
        if name == "UID":
            columns.append(uids)
        elif name == "FLAGS":
            shown: dict[frozenset[str], bytes] = {}
            columns.append([shown.get(f) or shown.setdefault(f, format_flags(f))
                            for f in flags])
        elif name == "INTERNALDATE":
            columns.append(format_internal_dates(dates))
        elif name == "RFC822.SIZE":
            columns.append(sizes)
        else:
            columns.append(modseqs)
    return b"".join([line % row for row in zip(*columns)])
