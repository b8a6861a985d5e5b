"""Walking the MIME parts of a message with bounded effort.

A hostile message may nest multiparts thousands deep or hold thousands of parts.
:func:`leaf_parts` visits at most :data:`MAX_PARTS` parts, :data:`MAX_DEPTH` levels
deep, without recursion; past either bound it stops and says so, and the caller
decides what an unexamined rest means (the matchers here treat it as a match: a rule
that blocks dangerous attachments must not be bypassed by hiding one deep down).
"""

from __future__ import annotations

from collections.abc import Iterator
from email.message import Message

MAX_PARTS = 500
MAX_DEPTH = 20


class TooComplex(Exception):
    """The message has more parts, or deeper nesting, than the walk examines."""


def leaf_parts(message: Message, max_parts: int = MAX_PARTS,
               max_depth: int = MAX_DEPTH) -> Iterator[Message]:
    """The non-multipart parts of ``message`` in order (the message itself when it is
    not multipart); raises TooComplex past ``max_parts`` parts or ``max_depth`` levels."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > max_parts:
            raise TooComplex(f"more than {max_parts} MIME parts")
        if not part.is_multipart():
            yield part
            continue
        if depth >= max_depth:
            raise TooComplex(f"MIME parts nest more than {max_depth} levels deep")
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend((child, depth + 1) for child in reversed(children)
                         if isinstance(child, Message))
