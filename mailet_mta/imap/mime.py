"""The MIME part tree of a stored message, as byte offsets into its octets.

IMAP answers with exact octets (``BODY[1.2]`` is the part as stored, RFC822.SIZE and the
sizes in BODYSTRUCTURE count stored octets), so the tree records where each part's
header and body start and end instead of rebuilding parts from a parsed object.

The parse is bounded and linear: each part's header end is one regular-expression
search, each multipart's delimiters one ``find`` loop over its own body; header fields
are looked up only in the first ``HEADER_BLOCK_LIMIT`` octets of a header block (as
everywhere else in the server); no more than ``limits.max_parts`` parts are built and
no deeper than ``limits.max_depth`` levels (the spool manager's ``maxMimeParts`` and
``maxMimeDepth``). What lies past a limit becomes an opaque application/octet-stream
leaf: the answer shows less structure, never an error. Bare-LF line ends are read as
well as CRLF ones.
"""

from __future__ import annotations

import binascii
import functools
import re
from dataclasses import dataclass, field

from ..header_block import HEADER_BLOCK_LIMIT
from ..mail import MimeLimits

__all__ = ["Part", "parse_structure", "header_fields", "first_fields", "unfold",
           "parse_params", "decoded_body", "param", "MAX_PARAMS", "DEFAULT_LIMITS",
           "SCAN_FACTOR", "DEPTH_CAP",
           "MIME_FIELDS"]

# Parameters kept from one Content-Type or Content-Disposition field; the rest are
# dropped (no real field has more than a handful).
MAX_PARAMS = 64
# Octets all delimiter scans of one message may cover, as a multiple of its size; a
# multipart found past that (only hostile nesting gets there) is left unsplit.
SCAN_FACTOR = 8
# The parse and the BODYSTRUCTURE answer recurse once a level: whatever maxMimeDepth
# says, the tree stops here, well inside Python's recursion limit.
DEPTH_CAP = 200
# RFC 2046 allows 70 octets; a multipart with a longer boundary is left unsplit.
MAX_BOUNDARY = 200
DEFAULT_LIMITS = MimeLimits()

# The first line that is not a header line (a field, a continuation, an mbox From_):
# the blank line that should end the header, or, as the stdlib parser also reads it, a
# body that starts without one.
_HEADER_STOP = re.compile(rb"(?m)^(?!From |[\x21-\x39\x3b-\x7e]*:|[ \t])")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_FIELD = re.compile(rb"(?m)^([^ \t\r\n:][^:\r\n]*):[^\n]*(?:\n[ \t][^\n]*)*(?:\n|\Z)")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_TOKEN = rb"[^\x00-\x20()<>@,;:\\\"/\[\]?=\x7f-\xff]+"
_MEDIA_TYPE = re.compile(rb"[ \t]*(" + _TOKEN + rb")[ \t]*/[ \t]*(" + _TOKEN + rb")")
_DISPOSITION = re.compile(rb"[ \t]*(" + _TOKEN + rb")")
_PARAM = re.compile(rb';[ \t\r\n]*(' + _TOKEN + rb')[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|'
                    + _TOKEN + rb')', re.S)
_CONTINUATION = re.compile(rb"(.+)\*([0-9]{1,3})(\*?)")
_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)
_UNENCODED = (b"", b"7bit", b"8bit", b"binary")
_NOT_BASE64 = bytes(set(range(256)) - set(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"))


@dataclass(eq=False, slots=True)
class Part:
    """One MIME entity: its header runs ``start``..``body_start`` (blank line included),
    its body ``body_start``..``end``. A multipart has its parts in ``children``; a
    message/rfc822 part has the encapsulated message as its one child and
    ``is_message`` set. ``opaque`` parts were cut by a limit and show as
    application/octet-stream."""

    start: int
    body_start: int
    end: int
    media: tuple[bytes, bytes] = (b"TEXT", b"PLAIN")
    params: list[tuple[bytes, bytes]] = field(default_factory=list)
    children: list[Part] = field(default_factory=list)
    is_message: bool = False
    opaque: bool = False
    defaulted: bool = True          # no (usable) Content-Type field
    fields: dict[bytes, bytes] = field(default_factory=dict)   # MIME_FIELDS present

    @property
    def is_multipart(self) -> bool:
        return bool(self.children) and not self.is_message

    @property
    def inner(self) -> Part:
        """The message whose header HEADER/TEXT mean: the encapsulated one of a
        message/rfc822 part, else the part itself."""
        return self.children[0] if self.is_message else self

    def child(self, number: int) -> Part | None:
        """Part ``number`` (1-based) below this one in IMAP section numbering
        (RFC 3501 §6.4.5): a multipart's parts, an encapsulated message's parts,
        and part 1 of anything that is not multipart being its body."""
        base = self.inner
        if base.is_multipart:
            return base.children[number - 1] if 0 < number <= len(base.children) else None
        return base if number == 1 else None


class _Budget:
    """What the parse of one message may still do: parts to build, octets to scan
    for delimiters (each multipart scans its own body, so nesting multiplies the
    scan; SCAN_FACTOR times the message bounds it)."""

    __slots__ = ("parts", "limits", "scan")

    def __init__(self, limits: MimeLimits, size: int):
        self.parts = 0
        self.limits = limits
        self.scan = SCAN_FACTOR * size


def header_end(data: bytes, start: int, end: int) -> int:
    """Offset where the body of the entity starting at ``start`` begins: just past the
    blank line ending its header, or at the first line that is not a header line when
    a body starts without one; ``end`` when all is header."""
    m = _HEADER_STOP.search(data, start, end)
    if m is None:
        return end
    pos = m.start()
    if data.startswith(b"\r\n", pos, end):
        return pos + 2
    if data.startswith(b"\n", pos, end):
        return pos + 1
    return pos


def header_fields(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The fields of the header block ``start``..``end``: (lower-case name, offset of
    the field, offset past its last line end), folded lines included, in order. Only
    the first ``HEADER_BLOCK_LIMIT`` octets are looked at; lines that are not fields
    (no colon) are passed over."""
    return [(m.group(1).rstrip(b" \t").lower(), m.start(), m.end())
            for m in _FIELD.finditer(data, start, min(end, start + HEADER_BLOCK_LIMIT))]


def unfold(raw: bytes) -> bytes:
    """A field value without its folding line breaks and outer white space."""
    return _FOLD.sub(b"", raw).strip(b" \t\r\n")


@functools.lru_cache(maxsize=64)
def _named_fields(names: tuple[bytes, ...]) -> re.Pattern[bytes]:
    alternatives = b"|".join(re.escape(n) for n in names)
    return re.compile(rb"(?mi)^(" + alternatives + rb")[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")


def first_fields(data: bytes, start: int, end: int, names: tuple[bytes, ...]
                 ) -> dict[bytes, bytes]:
    """The unfolded values of the first field of each of ``names`` (lower-case) in the
    header block ``start``..``end`` (its first ``HEADER_BLOCK_LIMIT`` octets). One
    regular-expression scan: other fields cost no Python work."""
    found: dict[bytes, bytes] = {}
    for m in _named_fields(names).finditer(data, start, min(end, start + HEADER_BLOCK_LIMIT)):
        name = m.group(1).lower()
        if name not in found:
            found[name] = unfold(m.group(2))
            if len(found) == len(names):
                break
    return found


def _unquote(value: bytes) -> bytes:
    if value.startswith(b'"'):
        return _QUOTED_PAIR.sub(rb"\1", value[1:-1])
    return value


def parse_params(text: bytes) -> list[tuple[bytes, bytes]]:
    """The ``; name=value`` parameters after a media type or disposition, unquoted,
    at most ``MAX_PARAMS``. RFC 2231 continuations (``name*0``, ``name*1*``) are
    joined; an extended value keeps its ``name*`` and ``charset'lang'%xx`` form, as
    clients decode it themselves."""
    params: list[tuple[bytes, bytes]] = []
    pieces: dict[bytes, list[tuple[int, bool, bytes]]] = {}
    for m in _PARAM.finditer(text):
        if len(params) + len(pieces) >= MAX_PARAMS:
            break
        name, value = m.group(1), _unquote(m.group(2))
        cont = _CONTINUATION.fullmatch(name)
        if cont:
            key = cont.group(1)
            if key not in pieces:
                params.append((key, b""))       # holds the place of the joined value
            pieces.setdefault(key, []).append((int(cont.group(2)), bool(cont.group(3)),
                                               value))
        else:
            params.append((name, value))
    if not pieces:
        return params
    out = []
    for name, value in params:
        segments = pieces.get(name) if not value else None
        if segments:
            segments.sort(key=lambda s: s[0])
            extended = segments[0][1]
            out.append((name + b"*" if extended else name, b"".join(s[2] for s in segments)))
        else:
            out.append((name, value))
    return out


def param(params: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of parameter ``name`` (lower-case), an RFC 2231 ``name*`` value
    decoded to its octets (``charset'lang'%xx``); None when absent."""
    extended = None
    for key, value in params:
        key = key.lower()
        if key == name:
            return value
        if key == name + b"*" and extended is None:
            extended = value
    if extended is None:
        return None
    raw = extended.split(b"'", 2)[-1]
    return _PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def parse_media(value: bytes | None) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """(type, subtype, params) of a Content-Type value; None when absent or invalid."""
    if value is None:
        return None
    m = _MEDIA_TYPE.match(value)
    if not m:
        return None
    return m.group(1), m.group(2), parse_params(value[m.end():])


def parse_disposition(value: bytes | None) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """(disposition, params) of a Content-Disposition value; None when absent/invalid."""
    if value is None:
        return None
    m = _DISPOSITION.match(value)
    if not m:
        return None
    return m.group(1), parse_params(value[m.end():])


# The MIME fields of a part, read once when the tree is built (BODYSTRUCTURE uses them).
MIME_FIELDS = (b"content-type", b"content-transfer-encoding", b"content-id",
               b"content-description", b"content-md5", b"content-disposition",
               b"content-language", b"content-location")


def _base64(body: bytes) -> bytes:
    """Lenient base64: other octets and '=' padding ignored, a last lone sextet
    dropped (what mail readers do with damaged attachments)."""
    clean = body.translate(None, _NOT_BASE64)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))


def decoded_body(data: bytes, part: Part) -> bytes | None:
    """The body of leaf ``part`` with its Content-Transfer-Encoding undone (base64,
    quoted-printable; 7bit, 8bit and binary as they are); None for an encoding this
    does not know. A multipart's or message's body comes as it is."""
    body = data[part.body_start:part.end]
    if part.is_multipart or part.is_message:
        return body
    encoding = part.fields.get(b"content-transfer-encoding", b"").lower()
    if encoding == b"base64":
        return _base64(body)
    if encoding == b"quoted-printable":
        return binascii.a2b_qp(body)
    return body if encoding in _UNENCODED else None


def _before_cr(data: bytes, pos: int, floor: int) -> int:
    return pos - 1 if pos > floor and data[pos - 1] == 0x0D else pos


def _split_multipart(data: bytes, start: int, end: int, boundary: bytes, limit: int
                     ) -> list[tuple[int, int]]:
    """The (start, end) of each body part between the delimiters ``--boundary`` in
    ``start``..``end`` (RFC 2046 §5.1.1): the line break before a delimiter belongs to
    it; preamble and epilogue are dropped; no close delimiter closes at ``end``.
    ``start`` follows a line break (the header's blank line). At most ``limit``
    spans: the last one then runs unsplit to the close delimiter. One regular-
    expression scan: lines that only look like a delimiter are passed over inside
    the engine."""
    name = rb"\n--" + re.escape(boundary)
    tail = rb"(?=[ \t]*\r?(?:\n|\Z))"
    delimiter = re.compile(name + rb"(--)?" + tail)
    parts: list[tuple[int, int]] = []
    current = -1
    for m in delimiter.finditer(data, max(start - 1, 0), end):
        if current >= 0:
            parts.append((current, max(_before_cr(data, m.start(), current), current)))
        if m.group(1):
            return parts
        line_end = data.find(b"\n", m.end(), end)
        current = end if line_end < 0 else line_end + 1
        if len(parts) == limit - 1:
            close = re.compile(name + b"--" + tail).search(data, current - 1, end)
            stop = end if close is None else _before_cr(data, close.start(), current)
            parts.append((current, max(stop, current)))
            return parts
    if current >= 0:
        parts.append((current, end))
    return parts


def _parse_part(data: bytes, start: int, end: int, depth: int, budget: _Budget,
                digest: bool) -> Part:
    budget.parts += 1
    body_start = header_end(data, start, end)
    fields = first_fields(data, start, body_start, MIME_FIELDS)
    media = parse_media(fields.get(b"content-type"))
    part = Part(start, body_start, end, fields=fields)
    if media is None:
        if digest:
            part.media = (b"MESSAGE", b"RFC822")
        else:
            part.params = [(b"CHARSET", b"US-ASCII")]
    else:
        part.media, part.params, part.defaulted = (media[0], media[1]), media[2], False
    kind = (part.media[0].lower(), part.media[1].lower())
    deeper = depth < min(budget.limits.max_depth, DEPTH_CAP)
    if kind[0] == b"multipart":
        boundary = param(part.params, b"boundary")
        if not boundary or len(boundary) > MAX_BOUNDARY or not deeper or \
                end - body_start > budget.scan:
            part.opaque = True
            return part
        budget.scan -= end - body_start
        spans = _split_multipart(data, body_start, end, boundary,
                                 budget.limits.max_parts - budget.parts + 1)
        if not spans:
            part.opaque = True
            return part
        for s, e in spans:
            if budget.parts >= budget.limits.max_parts:
                rest = Part(s, s, spans[-1][1], opaque=True)
                part.children.append(rest)
                break
            part.children.append(_parse_part(data, s, e, depth + 1, budget,
                                             kind[1] == b"digest"))
        return part
    if kind == (b"message", b"rfc822"):
        encoding = fields.get(b"content-transfer-encoding", b"").lower()
        if encoding in _UNENCODED:
            if deeper and budget.parts < budget.limits.max_parts:
                part.children.append(_parse_part(data, body_start, end, depth + 1, budget,
                                                 False))
                part.is_message = True
            else:
                part.opaque = True
    return part


def parse_structure(data: bytes, limits: MimeLimits = DEFAULT_LIMITS) -> Part:
    """The part tree of the message ``data`` (the message itself is the root)."""
    return _parse_part(data, 0, len(data), 1, _Budget(limits, len(data)), False)
