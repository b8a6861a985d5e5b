"""The maildrop of one POP3 session: the message list read at login, ready to answer.

Message numbers are 1-based positions in the list and stay fixed for the session
(RFC 1939 §4). The LIST and UIDL lines of every message are rendered once, on the
reader thread that loads the list, so a LIST or UIDL on the reactor is one join of
ready lines — also after DELE, which only leaves the lines of marked messages out.
"""

from __future__ import annotations

from array import array
from itertools import compress

from ..storage.mailboxes import message_row_chunks

__all__ = ["Maildrop", "load_maildrop"]


class Maildrop:
    """Row ids, sizes (octets RETR sends) and the rendered LIST/UIDL lines.

    ``chunks`` are lists of ``(id, uid, uidl, size)`` rows in uid order, as
    :func:`~mailet_mta.storage.mailboxes.message_row_chunks` yields them. Each chunk
    becomes arrays and lines of bytes before the next is read: a maildrop of 100,000
    messages holds a handful of objects the garbage collector tracks, not 100,000.
    """

    __slots__ = ("ids", "sizes", "octets", "list_lines", "uidl_lines")

    def __init__(self, chunks=()):
        self.ids, self.sizes = array("q"), array("q")
        self.list_lines: list[bytes] = []
        self.uidl_lines: list[bytes] = []
        for rows in chunks:
            self._add(rows)
        self.octets: int = sum(self.sizes)

    def _add(self, rows) -> None:
        if not rows:
            return
        ids, _uids, uidls, sizes = zip(*rows)
        first = len(self.ids) + 1
        numbers = range(first, first + len(ids))
        self.ids.extend(ids)
        self.sizes.extend(sizes)
        self.list_lines += map(b"%d %d\r\n".__mod__, zip(numbers, sizes))
        self.uidl_lines += [f"{n} {uidl}\r\n".encode("ascii")
                            for n, uidl in zip(numbers, uidls)]

    def __len__(self) -> int:
        return len(self.ids)

    def listing(self, lines: list[bytes], deleted) -> bytes:
        """``lines`` (``list_lines`` or ``uidl_lines``) of the messages whose index
        (number - 1) is not in ``deleted``, joined."""
        if not deleted:
            return b"".join(lines)
        kept = bytearray(b"\x01") * len(lines)
        for index in deleted:
            kept[index] = 0
        return b"".join(compress(lines, kept))


def load_maildrop(conn, user: str, folder: str) -> Maildrop:
    """On a reader thread: read the message list of (user, folder) and render it."""
    return Maildrop(message_row_chunks(conn, user, folder))
