"""The ENVELOPE of a message (RFC 3501 §7.4.2) from its raw header fields.

Values are given as they stand in the header, unfolded: RFC 2047 encoded words stay
encoded (the client decodes them), addresses are split into (name adl mailbox host)
by a linear tokenizer of RFC 5322 address lists, with group syntax as the RFC says
(``(NIL NIL "group" NIL)`` … ``(NIL NIL NIL NIL)``).
"""

from __future__ import annotations

import re

from .encoding import nstring
from .mime import first_fields

__all__ = ["envelope", "parse_addresses", "ENVELOPE_FIELDS", "MISSING_DOMAIN",
           "MAX_ADDRESSES"]

ENVELOPE_FIELDS = (b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc",
                   b"bcc", b"in-reply-to", b"message-id")
# What a mailbox without a domain gets as its host: NIL there would mean group syntax
# (RFC 3501 §7.4.2). Dovecot uses the same words.
MISSING_DOMAIN = b"MISSING_DOMAIN"
# Addresses shown of one field; the rest are left out of the ENVELOPE.
MAX_ADDRESSES = 10_000

Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]

_TOKENS = re.compile(rb'([ \t\r\n]+)|("(?:[^"\\]|\\.)*"?)|(\[[^\]]*\]?)|([<>,:;@.])|(\()'
                     rb'|([^ \t\r\n<>,:;@.()"\[\]]+)|(.)', re.S)
_COMMENT_PIECE = re.compile(rb"[^()\\]+|\\.?|[()]", re.S)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)

# token kinds
_WORD, _QUOTED, _SPECIAL, _COMMENT = 0, 1, 2, 3


def _comment_end(data: bytes, pos: int) -> tuple[int, bytes]:
    depth = 1
    start = pos
    for m in _COMMENT_PIECE.finditer(data, pos):
        piece = m.group()
        if piece == b"(":
            depth += 1
        elif piece == b")":
            depth -= 1
            if depth == 0:
                return m.end(), data[start:m.start()]
    return len(data), data[start:]


def _tokens(value: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(value):
        m = _TOKENS.match(value, pos)
        assert m is not None        # the last alternative matches any octet
        pos = m.end()
        if m.group(1):
            continue
        if m.group(2) is not None:
            text = m.group(2)
            inner = text[1:-1] if len(text) > 1 and text.endswith(b'"') else text[1:]
            out.append((_QUOTED, _QUOTED_PAIR.sub(rb"\1", inner)))
        elif m.group(4) is not None:
            out.append((_SPECIAL, m.group(4)))
        elif m.group(5) is not None:
            pos, comment = _comment_end(value, pos)
            out.append((_COMMENT, comment.strip()))
        else:
            out.append((_WORD, m.group()))
    return out


def _phrase(tokens: list[tuple[int, bytes]]) -> bytes | None:
    words = [t for kind, t in tokens if kind in (_WORD, _QUOTED) or (kind == _SPECIAL
                                                                      and t == b".")]
    return b" ".join(words) if words else None


def _spec(tokens: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    """(local part, domain) of the tokens of an addr-spec."""
    at = max((i for i, (k, t) in enumerate(tokens) if k == _SPECIAL and t == b"@"),
             default=-1)
    local_tokens = tokens if at < 0 else tokens[:at]
    local = b"".join(b'"%s"' % t.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
                     if k == _QUOTED else t
                     for k, t in local_tokens if k != _COMMENT)
    if at < 0:
        return local, MISSING_DOMAIN
    domain = b"".join(t for k, t in tokens[at + 1:] if k != _COMMENT)
    return local, domain or MISSING_DOMAIN


def _mailbox(tokens: list[tuple[int, bytes]]) -> Address | None:
    if not tokens:
        return None
    kinds = tokens
    opening = next((i for i, (k, t) in enumerate(kinds) if k == _SPECIAL and t == b"<"), -1)
    if opening >= 0:
        closing = next((i for i in range(opening + 1, len(kinds))
                        if kinds[i] == (_SPECIAL, b">")), len(kinds))
        name = _phrase(kinds[:opening])
        inside = kinds[opening + 1:closing]
        route = None
        colon = next((i for i, (k, t) in enumerate(inside) if k == _SPECIAL and t == b":"),
                     -1)
        if colon >= 0:
            route = b"".join(t for k, t in inside[:colon] if k != _COMMENT) or None
            inside = inside[colon + 1:]
        local, domain = _spec(inside)
        return name, route, local, domain
    comments = [t for k, t in kinds if k == _COMMENT and t]
    local, domain = _spec(kinds)
    if not local and domain == MISSING_DOMAIN:
        return None
    return (comments[-1] if comments else None), None, local, domain


def parse_addresses(value: bytes) -> list[Address]:
    """The ENVELOPE address structures of an address-list field value."""
    out: list[Address] = []
    current: list[tuple[int, bytes]] = []
    in_group = False
    angle = 0
    for kind, text in _tokens(value):
        if len(out) >= MAX_ADDRESSES:
            return out[:MAX_ADDRESSES]
        if kind == _SPECIAL:
            if text == b"<":
                angle += 1
            elif text == b">":
                angle = max(0, angle - 1)
            elif angle == 0 and text == b",":
                box = _mailbox(current)
                if box:
                    out.append(box)
                current = []
                continue
            elif angle == 0 and text == b":" and not in_group:
                out.append((None, None, _phrase(current) or b"", None))
                in_group = True
                current = []
                continue
            elif angle == 0 and text == b";" and in_group:
                box = _mailbox(current)
                if box:
                    out.append(box)
                out.append((None, None, None, None))
                in_group = False
                current = []
                continue
        current.append((kind, text))
    box = _mailbox(current)
    if box:
        out.append(box)
    if in_group:
        out.append((None, None, None, None))
    return out[:MAX_ADDRESSES]


def _address_list(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    addresses = parse_addresses(value)
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(b"(" + b" ".join(nstring(x) for x in a) + b")"
                           for a in addresses) + b")"


def envelope(data: bytes, start: int, end: int) -> bytes:
    """The ENVELOPE of the message whose header block is ``data[start:end]``."""
    f = first_fields(data, start, end, ENVELOPE_FIELDS)
    from_ = _address_list(f.get(b"from"))
    sender = _address_list(f.get(b"sender"))
    reply_to = _address_list(f.get(b"reply-to"))
    return b"(" + b" ".join([
        nstring(f.get(b"date")), nstring(f.get(b"subject")), from_,
        from_ if sender == b"NIL" else sender,      # RFC 3501 §7.4.2: absent or empty
        from_ if reply_to == b"NIL" else reply_to,  # Sender/Reply-To default to From
        _address_list(f.get(b"to")), _address_list(f.get(b"cc")),
        _address_list(f.get(b"bcc")), nstring(f.get(b"in-reply-to")),
        nstring(f.get(b"message-id")),
    ]) + b")"
