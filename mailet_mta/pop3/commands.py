"""The TRANSACTION-state commands of a POP3 session (RFC 1939 §5).

They answer from the message list read at login (indexed columns only): message
numbers are 1-based positions in it, and messages marked with DELE vanish from every
answer until RSET.
"""

from __future__ import annotations

import re
from itertools import islice

from twisted.internet import defer

__all__ = ["TransactionCommands"]

_NUMBER = re.compile(r"[0-9]{1,9}\Z")
_LIST_BATCH = 4096
READAHEAD_OCTETS = 1 << 20      # RETR reads the following messages too, up to this much
READAHEAD_MESSAGES = 64


class TransactionCommands:
    """STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET and LAST over ``self._messages``."""

    def _reset_mailbox(self, messages) -> None:
        self._messages = list(messages)
        self._deleted: set[int] = set()
        self._count = len(self._messages)
        self._octets = sum(m.size for m in self._messages)
        self._last = 0
        self._readahead: dict = {}

    def _content(self, number: int, info) -> defer.Deferred:
        """Deferred → MessageContent of message ``number`` (or None when it is gone).

        A client that RETRs every message asks for them in order: one database read
        fetches this one and the next ones (up to READAHEAD_OCTETS), so the following
        RETRs are answered without a trip through the reader threads.
        """
        if info.id in self._readahead:
            return defer.succeed(self._readahead.pop(info.id))
        open_many = getattr(self.backend, "open_messages", None)
        if open_many is None:
            return self.backend.open_message(info.id)
        ids, octets = [], 0
        for index in range(number - 1, len(self._messages)):
            if index in self._deleted:
                continue
            following = self._messages[index]
            if ids and (octets + following.size > READAHEAD_OCTETS
                        or len(ids) >= READAHEAD_MESSAGES):
                break
            ids.append(following.id)
            octets += following.size

        def keep(found: dict):
            self._readahead = found
            return found.pop(info.id, None)
        return open_many(ids).addCallback(keep)

    def _message(self, arg: str):
        """(number, MessageInfo) for a message-number argument, or None after -ERR."""
        if not _NUMBER.match(arg or ""):
            self.send("-ERR a message number is required")
            return None
        number = int(arg)
        if not 1 <= number <= len(self._messages) or number - 1 in self._deleted:
            self.send(f"-ERR no such message: {number}")
            return None
        return number, self._messages[number - 1]

    def do_STAT(self, _arg: str) -> None:
        self.send(f"+OK {self._count} {self._octets}")

    def _listing(self, arg: str, header: str, field: str) -> None:
        if arg:
            found = self._message(arg)
            if found:
                self.send(f"+OK {found[0]} {getattr(found[1], field)}")
            return
        values = [getattr(info, field) for info in self._messages]
        numbered = zip(range(1, len(values) + 1), values)
        if self._deleted:
            deleted = self._deleted
            numbered = ((n, v) for n, v in numbered if n - 1 not in deleted)
        write = self.transport.write
        write(f"+OK {header}\r\n".encode("ascii"))
        while batch := list(islice(numbered, _LIST_BATCH)):
            write("".join([f"{n} {v}\r\n" for n, v in batch]).encode("ascii"))
        write(b".\r\n")

    def do_LIST(self, arg: str) -> None:
        self._listing(arg, f"{self._count} messages ({self._octets} octets)", "size")

    def do_UIDL(self, arg: str) -> None:
        self._listing(arg, "unique-id listing follows", "uidl")

    def do_RETR(self, arg: str):
        found = self._message(arg)
        if not found:
            return None
        self._last = max(self._last, found[0])
        return self._send_message(found[0], found[1])

    def do_TOP(self, arg: str):
        number, _, lines = arg.partition(" ")
        lines = lines.strip()
        if not _NUMBER.match(lines):
            return self.send("-ERR usage: TOP message-number lines")
        found = self._message(number)
        if not found:
            return None
        return self._send_message(found[0], found[1], top_lines=int(lines))

    def do_DELE(self, arg: str) -> None:
        found = self._message(arg)
        if not found:
            return
        number, info = found
        self._deleted.add(number - 1)
        self._count -= 1
        self._octets -= info.size
        self.send(f"+OK message {number} deleted")

    def do_NOOP(self, _arg: str) -> None:
        self.send("+OK")

    def do_RSET(self, _arg: str) -> None:
        self._deleted.clear()
        self._count = len(self._messages)
        self._octets = sum(m.size for m in self._messages)
        self._last = 0
        self.send(f"+OK maildrop has {self._count} messages ({self._octets} octets)")

    def do_LAST(self, _arg: str) -> None:
        self.send(f"+OK {self._last}")
