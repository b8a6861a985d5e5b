"""SMTP DATA encoding of a message fed in chunks: CRLF line ends and dot-stuffing.

RFC 5321 §4.5.2: a line that starts with ``.`` is sent with one more ``.``; the data ends
with ``CRLF.CRLF``. Every line end leaves as CRLF: a bare LF or a bare CR becomes CRLF,
so no receiver that ends lines (or the data) on a lone CR or LF can be made to read a
second, smuggled mail (SMTP smuggling). The state that matters across chunks (were we
at the start of a line? did the last chunk end with CR?) is kept here, so a ``.`` or a
CRLF that falls exactly on a chunk boundary is handled like any other (Twisted's client
loses it at 16 KiB). All of it is done with bytes operations on whole chunks.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


def _crlf(data: bytes) -> bytes:
    """Bare CR or LF → CRLF; the common all-CRLF case costs three counts, no regex."""
    pairs = data.count(b"\r\n")
    if data.count(b"\n") == pairs and data.count(b"\r") == pairs:
        return data
    return _LINE_END.sub(b"\r\n", data)


class DotStuffer:
    """Turns message bytes, chunk by chunk, into the bytes to send after ``DATA``."""

    __slots__ = ("_line_start", "_held_cr", "_empty")

    def __init__(self):
        self._line_start = True     # the next byte sent begins a line
        self._held_cr = False       # a CR ended the last chunk: held until we see its LF
        self._empty = True

    def feed(self, chunk: bytes) -> bytes:
        """The encoded form of ``chunk`` (may be empty)."""
        if not chunk:
            return b""
        self._empty = False
        if self._held_cr:
            chunk = b"\r" + chunk
        self._held_cr = chunk[-1:] == b"\r"
        if self._held_cr:
            chunk = chunk[:-1]
            if not chunk:
                return b""
        chunk = _crlf(chunk)
        # Every line end is now CRLF, so "\n." is exactly "a line begins with '.'".
        chunk = chunk.replace(b"\n.", b"\n..")
        if self._line_start and chunk[:1] == b".":
            chunk = b"." + chunk
        self._line_start = chunk[-1:] == b"\n"
        return chunk

    def finish(self) -> bytes:
        """The terminator: a CRLF if the message did not end with one, then ``.CRLF``."""
        if self._held_cr:
            return b"\r\n.\r\n"
        if self._empty or self._line_start:
            return b".\r\n"
        return b"\r\n.\r\n"


def stuff(data: bytes, chunk_size: int = 65536) -> bytes:
    """Encode a whole message (tests and small messages)."""
    s = DotStuffer()
    out = [s.feed(data[i:i + chunk_size]) for i in range(0, len(data), chunk_size)]
    out.append(s.finish())
    return b"".join(out)
