"""IMAP wire forms of strings, mailbox names, flags and dates (RFC 3501 §4, §5.1.3, §9).

Pure functions over bytes and parser tokens (``str`` atom, ``bytes`` string, ``list``).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime
import functools
import re
from collections.abc import Iterable

from .errors import BadCommand

__all__ = ["quoted_or_literal", "nstring", "astring_to_str", "encode_mailbox",
           "decode_mailbox", "format_flags", "format_internal_date",
           "format_internal_dates", "parse_date_time",
           "parse_date", "MONTHS"]

Token = str | bytes | list["Token"]

_LAST_SECOND = 253402214399.0     # 9999-12-30 23:59:59 UTC: a zone may still add a day
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.lower(): i + 1 for i, m in enumerate(MONTHS)}

# A quoted string may hold any 7-bit octet but NUL, CR and LF (RFC 3501 §9 QUOTED-CHAR);
# longer strings go as literals so no line gets near a client's line-length limit.
_UNQUOTABLE = re.compile(rb"[\x00\r\n\x80-\xff]")
_QUOTED_LIMIT = 1000


def quoted_or_literal(data: bytes) -> bytes:
    """``data`` as a quoted string when that is safe, else as a literal ``{n}\\r\\n…``."""
    if len(data) < _QUOTED_LIMIT and not _UNQUOTABLE.search(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(data: bytes | None) -> bytes:
    """An nstring: ``NIL`` for None, else a quoted string or literal."""
    return b"NIL" if data is None else quoted_or_literal(data)


def astring_to_str(token: Token) -> str:
    """The text of an astring token (an atom, or a quoted string or literal in UTF-8)."""
    if isinstance(token, str):
        return token
    if isinstance(token, bytes):
        try:
            return token.decode("utf-8")
        except UnicodeDecodeError:
            raise BadCommand("string is not valid UTF-8") from None
    raise BadCommand("expected an atom or a string, got a parenthesised list")


# ---------------------------------------------------------------------------
# Mailbox names: modified UTF-7 (RFC 3501 §5.1.3) or UTF-8 after ENABLE UTF8=ACCEPT

def _b64_utf16(text: str) -> bytes:
    raw = base64.b64encode(text.encode("utf-16-be")).rstrip(b"=")
    return b"&" + raw.replace(b"/", b",") + b"-"


def encode_mailbox(name: str, utf8: bool) -> bytes:
    """The octets of mailbox ``name`` on the wire (not yet quoted: pass them to
    :func:`quoted_or_literal`): UTF-8 when UTF8=ACCEPT is enabled, else modified
    UTF-7, where printable ASCII stands for itself, ``&`` is ``&-`` and other
    characters are ``&``-shifted modified BASE64 of their UTF-16."""
    if utf8:
        return name.encode("utf-8")
    out: list[bytes] = []
    pending: list[str] = []
    for ch in name:
        if "\x20" <= ch <= "\x7e":
            if pending:
                out.append(_b64_utf16("".join(pending)))
                pending.clear()
            out.append(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    if pending:
        out.append(_b64_utf16("".join(pending)))
    return b"".join(out)


_SHIFTED = re.compile(rb"&([A-Za-z0-9+,]*)-")


def _decode_mutf7(raw: bytes) -> str:
    if re.search(rb"[^\x20-\x7e]", raw):
        raise BadCommand("mailbox name has 8-bit or control octets (use modified UTF-7)")
    out: list[str] = []
    pos = 0
    for m in _SHIFTED.finditer(raw):
        out.append(raw[pos:m.start()].decode("ascii"))
        pos = m.end()
        b64 = m.group(1)
        if not b64:
            out.append("&")
            continue
        if len(b64) % 4 == 1:
            raise BadCommand("mailbox name has a bad modified UTF-7 sequence")
        try:
            data = base64.b64decode(b64.replace(b",", b"/") + b"=" * (-len(b64) % 4),
                                    validate=True)
            text = data.decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError):
            raise BadCommand("mailbox name has a bad modified UTF-7 sequence") from None
        # RFC 3501 §5.1.3: printable ASCII must stand for itself, never be encoded;
        # and the encoding must be the canonical one (no stray bits in the padding).
        if any("\x20" <= c <= "\x7e" for c in text) or _b64_utf16(text)[1:-1] != b64:
            raise BadCommand("mailbox name has a non-canonical modified UTF-7 sequence")
        out.append(text)
    rest = raw[pos:]
    if b"&" in rest:
        raise BadCommand("mailbox name has an unterminated modified UTF-7 sequence")
    out.append(rest.decode("ascii"))
    return "".join(out)


def decode_mailbox(token: Token, utf8: bool) -> str:
    """The mailbox name a client sent (an atom or a string): UTF-8 when UTF8=ACCEPT is
    enabled, else modified UTF-7. BadCommand when it is neither valid nor canonical."""
    if isinstance(token, list):
        raise BadCommand("expected a mailbox name, got a parenthesised list")
    raw = token.encode("utf-8", "surrogateescape") if isinstance(token, str) else token
    if b"\x00" in raw or b"\r" in raw or b"\n" in raw:
        raise BadCommand("mailbox name has NUL, CR or LF")
    if utf8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadCommand("mailbox name is not valid UTF-8") from None
    return _decode_mutf7(raw)


# ---------------------------------------------------------------------------
# Flags and dates

def format_flags(flags: Iterable[str]) -> bytes:
    """A flag list: ``(\\Seen foo)``, system flags first, each group sorted."""
    ordered = sorted(flags, key=lambda f: (not f.startswith("\\"), f.lower(), f))
    return b"(" + " ".join(ordered).encode("utf-8") + b")"


_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=4096)
def _day_text(day: int) -> str:
    """``"17-Jul-1996 `` for ``day`` days after 1970-01-01 (cached: a folder's
    messages fall on few days, and the calendar is the costly part)."""
    t = datetime.date.fromordinal(day + _EPOCH_ORDINAL)
    return '"%2d-%s-%04d ' % (t.day, MONTHS[t.month - 1], t.year)


def format_internal_date(epoch: float, tz_offset_minutes: int = 0) -> bytes:
    """An INTERNALDATE: ``"17-Jul-1996 02:44:25 -0700"`` (RFC 3501 §9 date-time, the
    day padded with a space), the time shown in the zone ``tz_offset_minutes`` east
    of UTC."""
    epoch = min(max(epoch, 0.0), _LAST_SECOND)     # a date the format can show
    day, second = divmod(int(epoch) + 60 * tz_offset_minutes, 86400)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    sign = "-" if tz_offset_minutes < 0 else "+"
    zh, zm = divmod(abs(tz_offset_minutes), 60)
    return (_day_text(day) + '%02d:%02d:%02d %s%02d%02d"' % (
        hour, minute, second, sign, zh, zm)).encode("ascii")


_SECOND_UTC = tuple(b'%02d +0000"' % n for n in range(60))


def format_internal_dates(epochs: Iterable[float]) -> list[bytes]:
    """:func:`format_internal_date` (UTC) of each of ``epochs``: the text up to the
    minute made once per distinct minute, the seconds and zone from a table."""
    minutes: dict[int, bytes] = {}
    out = []
    for epoch in epochs:
        if not 0.0 <= epoch <= _LAST_SECOND:
            out.append(format_internal_date(epoch))
            continue
        minute, second = divmod(int(epoch), 60)
        head = minutes.get(minute)
        if head is None:
            if len(minutes) >= 65536:       # a bound on the table, not a likely size
                minutes.clear()
            head = minutes[minute] = format_internal_date(minute * 60.0)[:-9]
        out.append(head + _SECOND_UTC[second])
    return out


def _token_text(token: Token, what: str) -> str:
    if isinstance(token, bytes):
        try:
            return token.decode("ascii")
        except UnicodeDecodeError:
            raise BadCommand(f"bad {what}: non-ASCII octets") from None
    if isinstance(token, str):
        return token
    raise BadCommand(f"bad {what}: got a parenthesised list")


_DATE_TIME = re.compile(r"( ?\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) "
                        r"([+-])(\d{2})(\d{2})")
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})")


def _month(name: str, what: str) -> int:
    try:
        return _MONTH_NUMBER[name.lower()]
    except KeyError:
        raise BadCommand(f"bad {what}: unknown month {name!r}") from None


def parse_date_time(token: Token) -> float:
    """The epoch of an APPEND date-time ``"17-Jul-1996 02:44:25 -0700"``; BadCommand
    when it is not one (RFC 3501 §9 date-time)."""
    text = _token_text(token, "date-time")
    m = _DATE_TIME.fullmatch(text)
    if not m:
        raise BadCommand('bad date-time: expected "dd-Mon-yyyy hh:mm:ss +zzzz"')
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    try:
        when = datetime.datetime(int(year), _month(mon, "date-time"), int(day), int(hh),
                                 int(mm), int(ss))
    except ValueError as exc:
        raise BadCommand(f"bad date-time: {exc}") from None
    if int(zm) >= 60:
        raise BadCommand("bad date-time: zone minutes out of range")
    offset = (int(zh) * 60 + int(zm)) * (-1 if sign == "-" else 1)
    return float(calendar.timegm(when.timetuple()) - offset * 60)


def parse_date(token: Token) -> datetime.date:
    """A SEARCH date ``1-Feb-1994`` (atom or quoted); BadCommand when it is not one."""
    text = _token_text(token, "date")
    m = _DATE.fullmatch(text)
    if not m:
        raise BadCommand("bad date: expected d-Mon-yyyy, e.g. 1-Feb-1994")
    try:
        return datetime.date(int(m.group(3)), _month(m.group(2), "date"), int(m.group(1)))
    except ValueError as exc:
        raise BadCommand(f"bad date: {exc}") from None
