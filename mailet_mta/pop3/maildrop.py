"""The maildrop of one POP3 session: the message list read at login, ready to answer.

Message numbers are 1-based positions in the list and stay fixed for the session
(RFC 1939 §4). The LIST and UIDL lines of every message are rendered once, on the
reader thread that loads the list, so a LIST or UIDL on the reactor is one join of
ready lines — also after DELE, which only leaves the lines of marked messages out.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from itertools import compress

from ..storage.mailboxes import mailbox_state, message_row_chunks

__all__ = ["Maildrop", "MaildropCache", "load_maildrop"]


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


class MaildropCache:
    """The listings read at recent logins, reused while their mailbox is unchanged.

    A POP3 client polls the same mailbox every few minutes and most polls find it as
    it was: the next login then checks the mailbox's state (one row and a count) instead
    of reading and rendering every message again. A listing is kept under the state
    read *before* it was loaded and only when its length agrees with that state, so a
    delivery racing the load makes a miss, never a stale hit. At most ``max_messages``
    messages' listings are kept (least recently used go first); a Maildrop is never
    changed after it is built, so sessions can share one.
    """

    def __init__(self, max_messages: int = 200_000):
        self.max_messages = max_messages
        self._entries: OrderedDict = OrderedDict()     # (user, folder) → (state, drop)
        self._messages = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key, state) -> Maildrop | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != state:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key, state, drop: Maildrop) -> None:
        if len(drop) > self.max_messages:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._messages -= len(old[1])
            self._entries[key] = (state, drop)
            self._messages += len(drop)
            while self._messages > self.max_messages:
                _key, (_state, evicted) = self._entries.popitem(last=False)
                self._messages -= len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._messages = 0


def load_maildrop(conn, user: str, folder: str,
                  cache: MaildropCache | None = None) -> Maildrop:
    """On a reader thread: the message list of (user, folder), rendered — from
    ``cache`` (one per database) when the mailbox has not changed since it was last
    read."""
    state = mailbox_state(conn, user, folder) if cache is not None else None
    if state is None:
        return Maildrop(message_row_chunks(conn, user, folder))
    key = (user, folder)
    drop = cache.get(key, state)
    if drop is None:
        drop = Maildrop(message_row_chunks(conn, user, folder))
        if len(drop) == state[3]:
            cache.put(key, state, drop)
    return drop
