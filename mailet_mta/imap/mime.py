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
import re
from dataclasses import dataclass, field

from ..header_block import HEADER_BLOCK_LIMIT
from ..mail import MimeLimits

__all__ = ["Part", "parse_structure", "header_fields", "first_fields", "unfold",
           "parse_params", "decoded_body", "MAX_PARAMS", "DEFAULT_LIMITS"]

# Parameters kept from one Content-Type or Content-Disposition field; the rest are
# dropped (no real field has more than a handful).
MAX_PARAMS = 64
DEFAULT_LIMITS = MimeLimits()

_BLANK_LINE = re.compile(rb"\n\r?\n")
_FIELD = re.compile(rb"(?m)^[^ \t\r\n][^\n]*(?:\n[ \t][^\n]*)*(?:\n|\Z)")
_DELIMITER_TAIL = re.compile(rb"(--)?[ \t]*(?:\r?\n|\Z)")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_TOKEN = rb"[^\x00-\x20()<>@,;:\\\"/\[\]?=\x7f-\xff]+"
_MEDIA_TYPE = re.compile(rb"[ \t]*(" + _TOKEN + rb")[ \t]*/[ \t]*(" + _TOKEN + rb")")
_DISPOSITION = re.compile(rb"[ \t]*(" + _TOKEN + rb")")
_PARAM = re.compile(rb';[ \t\r\n]*(' + _TOKEN + rb')[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|'
                    + _TOKEN + rb')', re.S)
_CONTINUATION = re.compile(rb"(.+)\*([0-9]{1,3})(\*?)")
_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)
_UNENCODED = (b"", b"7bit", b"8bit", b"binary")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


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
    __slots__ = ("parts", "limits")

    def __init__(self, limits: MimeLimits):
        self.parts = 0
        self.limits = limits


def header_end(data: bytes, start: int, end: int) -> int:
    """Offset just past the blank line ending the header that starts at ``start``
    (``end`` when there is none: all header, no body)."""
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    if data.startswith(b"\n", start) and start < end:
        return start + 1
    m = _BLANK_LINE.search(data, start, end)
    return m.end() if m else end


def header_fields(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The fields of the header block ``start``..``end``: (lower-case name, offset of
    the field, offset past its last line end), folded lines included, in order. Only
    the first ``HEADER_BLOCK_LIMIT`` octets are looked at."""
    out = []
    for m in _FIELD.finditer(data, start, min(end, start + HEADER_BLOCK_LIMIT)):
        s, e = m.span()
        colon = data.find(b":", s, e)
        eol = data.find(b"\n", s, e)
        if colon < 0 or (0 <= eol < colon):
            continue            # not a field line (no colon on its first line)
        name = data[s:colon].rstrip(b" \t").lower()
        if name:
            out.append((name, s, e))
    return out


def unfold(raw: bytes) -> bytes:
    """A field value without its folding line breaks and outer white space."""
    return _FOLD.sub(b"", raw).strip(b" \t\r\n")


def first_fields(data: bytes, start: int, end: int, names: tuple[bytes, ...]
                 ) -> dict[bytes, bytes]:
    """The unfolded values of the first field of each of ``names`` (lower-case) in the
    header block ``start``..``end``."""
    found: dict[bytes, bytes] = {}
    for name, s, e in header_fields(data, start, end):
        if name in names and name not in found:
            found[name] = unfold(data[data.index(b":", s, e) + 1:e])
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


_CONTENT_FIELDS = (b"content-type", b"content-transfer-encoding")


def _base64(body: bytes) -> bytes:
    """Lenient base64: other octets and '=' padding ignored, a last lone sextet
    dropped (what mail readers do with damaged attachments)."""
    clean = _NOT_BASE64.sub(b"", body)
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
    cte = first_fields(data, part.start, part.body_start, (b"content-transfer-encoding",))
    encoding = cte.get(b"content-transfer-encoding", b"").lower()
    if encoding == b"base64":
        return _base64(body)
    if encoding == b"quoted-printable":
        return binascii.a2b_qp(body)
    return body if encoding in _UNENCODED else None


def _split_multipart(data: bytes, start: int, end: int, boundary: bytes
                     ) -> list[tuple[int, int]]:
    """The (start, end) of each body part between the delimiters ``--boundary`` in
    ``start``..``end`` (RFC 2046 §5.1.1): the line break before a delimiter belongs to
    it; preamble and epilogue are dropped; no close delimiter closes at ``end``."""
    delimiter = b"--" + boundary
    parts: list[tuple[int, int]] = []
    current = -1
    pos = start
    while True:
        i = data.find(delimiter, pos, end)
        if i < 0:
            break
        pos = i + 1
        if i != start and data[i - 1] != 0x0A:
            continue
        tail = _DELIMITER_TAIL.match(data, i + len(delimiter), end)
        if tail is None:
            continue
        if current >= 0:
            body_end = i
            if body_end > current and data[body_end - 1] == 0x0A:
                body_end -= 1
                if body_end > current and data[body_end - 1] == 0x0D:
                    body_end -= 1
            parts.append((current, body_end))
        if tail.group(1):
            return parts
        current = pos = tail.end()
    if current >= 0:
        parts.append((current, end))
    return parts


def _parse_part(data: bytes, start: int, end: int, depth: int, budget: _Budget,
                digest: bool) -> Part:
    budget.parts += 1
    body_start = header_end(data, start, end)
    fields = first_fields(data, start, body_start, _CONTENT_FIELDS)
    media = parse_media(fields.get(b"content-type"))
    part = Part(start, body_start, end)
    if media is None:
        if digest:
            part.media = (b"MESSAGE", b"RFC822")
        else:
            part.params = [(b"CHARSET", b"US-ASCII")]
    else:
        part.media, part.params, part.defaulted = (media[0], media[1]), media[2], False
    kind = (part.media[0].lower(), part.media[1].lower())
    deeper = depth < budget.limits.max_depth
    if kind[0] == b"multipart":
        boundary = dict((k.lower(), v) for k, v in part.params).get(b"boundary")
        if not boundary or not deeper:
            part.opaque = True
            return part
        spans = _split_multipart(data, body_start, end, boundary)
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
    return _parse_part(data, 0, len(data), 1, _Budget(limits), False)
