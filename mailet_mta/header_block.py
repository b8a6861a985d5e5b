"""The raw header block of a message: found, read and edited as bytes, without a parse.

A message's header block runs up to the first empty line. Reading it is linear: each
octet is searched once, however the bytes arrive, and at most ``HEADER_BLOCK_LIMIT``
octets are kept. Edits (:func:`fields_removed`, :func:`fields_added`) rewrite only the
block and see the fields the stdlib ``email`` parser would see: the block ends, for
them, at the first line that is not a header line, as it does for the parser.
"""

from __future__ import annotations

import email.policy
import re

# A header block is read at most this far; past it the rest counts as body. The SMTP
# server refuses longer header blocks (``maxHeaderSize``, 1 MiB by default), so only a
# mail made some other way is cut here.
HEADER_BLOCK_LIMIT = 1024 * 1024


def _blank_line_end(data, start: int = 0) -> int:
    """Offset just past the first empty line found at or after ``start`` (-1: none)."""
    crlf = data.find(b"\n\r\n", start)
    # Only an LF LF before the first LF CR LF matters: a CRLF message (no LF LF at all)
    # is not searched to its end a second time.
    lf = data.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(data))
    if crlf < 0 and lf < 0:
        return -1
    if lf < 0 or 0 <= crlf < lf:
        return crlf + 3
    return lf + 2


def _header_end(data: bytes) -> int:
    """Offset just past the empty line ending the header block (-1: none yet)."""
    if data.startswith(b"\r\n"):
        return 2
    if data.startswith(b"\n"):
        return 1
    return _blank_line_end(data)


def _header_block(data: bytes, limit: int = HEADER_BLOCK_LIMIT) -> bytes:
    end = _header_end(data[:limit + 3])
    return data[:limit] if end < 0 else data[:end]


def _read_header_block(f, chunk: int = 65536, limit: int = HEADER_BLOCK_LIMIT) -> bytes:
    """The header block of the binary file ``f``, read in chunks: each octet is
    searched once (linear time), and at most ``limit`` octets are kept (a block that
    has not ended by then is cut there)."""
    buf = bytearray()
    while len(buf) < limit + 3:
        searched = len(buf)
        more = f.read(min(chunk, limit + 3 - searched))
        if not more:
            break
        buf += more
        # An empty line may straddle two reads; the first two octets decide alone.
        end = _header_end(buf) if searched < 2 else _blank_line_end(buf, searched - 2)
        if end >= 0:
            return bytes(buf[:end])
    return bytes(buf[:limit])


# What the stdlib's feedparser takes as a header line (field, continuation, mbox From_);
# the first other line ends the header block for it, and so for header_names().
_HEADER_LINE = re.compile(rb"(From |[\x21-\x39\x3b-\x7e]*:|[\t ])")


def field_names(block: bytes) -> list[str]:
    """Lower-cased field names of a raw header block, as the email parser sees them."""
    names = []
    for i, line in enumerate(block.split(b"\n")):
        if not _HEADER_LINE.match(line):
            break
        first = line[:1]
        if first in (b" ", b"\t") or (i == 0 and line.startswith(b"From ")):
            continue
        colon = line.index(b":")
        if colon:                   # ":value" has no name; the parser drops it too
            names.append(line[:colon].decode("latin-1").lower())
    return names


def _lines(block: bytes) -> list[bytes]:
    """The lines of ``block`` with their line ends (LF, with or without CR)."""
    return re.findall(rb"[^\n]*\n|[^\n]+", block)


def _header_lines(lines: list[bytes]) -> int:
    """How many of ``lines`` are header lines, as the email parser counts them."""
    for i, line in enumerate(lines):
        if not _HEADER_LINE.match(line):
            return i
    return len(lines)


def fields_removed(block: bytes, names) -> tuple[bytes, int]:
    """``block`` without the fields named in ``names`` (lower-case), continuation
    lines included; and how many fields went."""
    lines = _lines(block)
    count = _header_lines(lines)
    kept, removed, dropping = [], 0, False
    for i, line in enumerate(lines[:count]):
        if line[:1] in (b" ", b"\t") or (i == 0 and line.startswith(b"From ")):
            if not dropping:
                kept.append(line)
            continue
        name = line[:line.index(b":")].decode("latin-1").lower()
        dropping = bool(name) and name in names
        removed += dropping
        if not dropping:
            kept.append(line)
    return b"".join(kept + lines[count:]), removed


def fields_added(block: bytes, name: str, value: str,
                 policy: email.policy.Policy = email.policy.SMTP) -> bytes | None:
    """``block`` with the field ``name: value`` after its last field (where the email
    package's ``msg[name] = value`` puts it), folded and encoded by ``policy``; None
    when the block was cut at the limit and has no end to add after."""
    if len(block) >= HEADER_BLOCK_LIMIT:
        return None
    lines = _lines(block)
    count = _header_lines(lines)
    newline = b"\r\n" if not lines or lines[0].endswith(b"\r\n") else b"\n"
    field = policy.clone(linesep=newline.decode()).fold(name, value).encode("utf-8")
    head = lines[:count]
    if head and not head[-1].endswith(b"\n"):
        head[-1] += newline
    return b"".join(head) + field + b"".join(lines[count:])
