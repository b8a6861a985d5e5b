"""SMTP DATA encoding of a message fed in chunks: CRLF line ends and dot-stuffing.

RFC 5321 §4.5.2: a line that starts with ``.`` is sent with one more ``.``; the data ends
with ``CRLF.CRLF``. The state that matters across chunks (were we at the start of a
line? did the last chunk end with CR?) is kept here, so a ``.`` that falls exactly on a
chunk boundary is stuffed like any other (Twisted's client loses it at 16 KiB).
"""

from __future__ import annotations

import re

_BARE_LF = re.compile(rb"(?<!\r)\n")


def _crlf(data: bytes) -> bytes:
    """Bare LF → CRLF; the common all-CRLF case costs two counts, no regex."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF.sub(b"\r\n", data)


class DotStuffer:
    """Turns message bytes, chunk by chunk, into the bytes to send after ``DATA``."""

    __slots__ = ("_line_start", "_after_cr", "_empty")

    def __init__(self):
        self._line_start = True     # the next byte begins a line
        self._after_cr = False      # the last byte was CR
        self._empty = True

    def feed(self, chunk: bytes) -> bytes:
        """The encoded form of ``chunk`` (may be empty)."""
        if not chunk:
            return b""
        self._empty = False
        if self._after_cr and chunk[:1] == b"\n":
            chunk = b"\n" + _crlf(chunk[1:])
        else:
            chunk = _crlf(chunk)
        # Every LF is now preceded by CR, so "\n." is exactly "a line begins with '.'".
        chunk = chunk.replace(b"\n.", b"\n..")
        if self._line_start and chunk[:1] == b".":
            chunk = b"." + chunk
        last = chunk[-1:]
        self._line_start = last == b"\n"
        self._after_cr = last == b"\r"
        return chunk

    def finish(self) -> bytes:
        """The terminator: a CRLF if the message did not end with one, then ``.CRLF``."""
        if self._empty or self._line_start:
            return b".\r\n"
        if self._after_cr:
            return b"\n.\r\n"
        return b"\r\n.\r\n"


def stuff(data: bytes, chunk_size: int = 65536) -> bytes:
    """Encode a whole message (tests and small messages)."""
    s = DotStuffer()
    out = [s.feed(data[i:i + chunk_size]) for i in range(0, len(data), chunk_size)]
    out.append(s.finish())
    return b"".join(out)
