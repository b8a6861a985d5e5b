"""The TRANSACTION-state commands of a POP3 session (RFC 1939 §5).

They answer from the :class:`~mailet_mta.mailstore.MessageList` read at login:
message numbers are 1-based positions in it, and messages marked with DELE vanish from
every answer until RSET. LIST and UIDL send lines rendered at login; a whole LIST or
UIDL also starts reading the first messages ahead, for the RETRs that usually follow.
"""

from __future__ import annotations

import re

from twisted.internet import defer

from ..mailstore import MessageList
from .streaming import CHUNK, whole_response

__all__ = ["TransactionCommands"]

_NUMBER = re.compile(r"[0-9]{1,9}\Z")
# RETR reads the following messages too: first up to these bounds, then each batch
# read ahead twice the last, up to the MAX bounds.
READAHEAD_OCTETS = 1 << 20
READAHEAD_MESSAGES = 64
READAHEAD_MAX_OCTETS = 2 << 20
READAHEAD_MAX_MESSAGES = 256
_MAX_SCALE = max(READAHEAD_MAX_OCTETS // READAHEAD_OCTETS,
                 READAHEAD_MAX_MESSAGES // READAHEAD_MESSAGES)


class TransactionCommands:
    """STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET and LAST over ``self._drop``."""

    def _reset_mailbox(self, maildrop: MessageList) -> None:
        self._drop = maildrop
        self._deleted: set[int] = set()
        self._count = len(maildrop)
        self._octets = maildrop.octets
        self._last = 0
        self._readahead: dict = {}          # message id → MessageContent, read ahead
        self._ahead_from = 0                # index of the first message not read ahead
        self._batch_len = 0
        self._batch_scale = 1               # the next batch's bounds, × READAHEAD_*
        self._prefetch: defer.Deferred | None = None
        self._generation = 0
        self._read_first_when_drained = False

    # -- read-ahead ------------------------------------------------------------------------
    def _content(self, number: int) -> defer.Deferred:
        """Deferred → MessageContent of message ``number`` (or None when it is gone).

        A client that RETRs every message asks for them in order: one database read
        (started by the whole LIST or UIDL before, or else by this RETR) fetches this
        one and the next ones (up to READAHEAD_OCTETS or
        READAHEAD_MESSAGES), so the following RETRs are answered without a trip through
        the reader threads; once half of that batch is sent, the next batch is read
        while the rest is sent. Each batch read ahead has twice the bounds of the last,
        up to READAHEAD_MAX_OCTETS and READAHEAD_MAX_MESSAGES: every read costs the
        RETR that starts it a wait for the interpreter lock while the reader thread
        runs, so a long run of RETRs is served with few reads, and a client that
        RETRs one message still reads only the first bounds. At most about
        1.5 × READAHEAD_MAX_OCTETS are held per session. A client that jumps elsewhere
        gets a fresh batch from there, with the first bounds again.
        """
        wanted = self._drop.ids[number - 1]
        if wanted in self._readahead:
            return defer.succeed(self._take(wanted))
        if self._prefetch is not None and number - 1 < self._ahead_from:
            def landed(_):
                return self._take(wanted) if wanted in self._readahead \
                    else self._fetch(number)
            return self._prefetch.addCallback(landed)
        return self._fetch(number)

    def _batch(self, start: int) -> list:
        """Ids of the messages from index ``start`` on, within the read-ahead bounds."""
        ids, sizes = self._drop.ids, self._drop.sizes
        max_octets = min(READAHEAD_OCTETS * self._batch_scale, READAHEAD_MAX_OCTETS)
        max_messages = min(READAHEAD_MESSAGES * self._batch_scale, READAHEAD_MAX_MESSAGES)
        batch, octets, index = [], 0, start
        while index < len(ids):
            if index not in self._deleted:
                if batch and (octets + sizes[index] > max_octets
                              or len(batch) >= max_messages):
                    break
                batch.append(ids[index])
                octets += sizes[index]
            index += 1
        self._ahead_from, self._batch_len = index, len(batch)
        return batch

    def _fetch(self, number: int) -> defer.Deferred:
        """Read a batch from message ``number`` now; a read ahead in flight is dropped."""
        self._generation += 1
        self._prefetch = None
        self._batch_scale = 1
        wanted = self._drop.ids[number - 1]

        def keep(found: dict):
            self._readahead = found
            return self._take(wanted) if wanted in found else None
        return self.backend.open_messages(self._batch(number - 1)).addCallback(keep)

    def _take(self, wanted: int):
        """Pop a read-ahead message; read the next batch once half of this one is sent."""
        content = self._readahead.pop(wanted)
        if (self._prefetch is None and self._ahead_from < len(self._drop.ids)
                and len(self._readahead) <= self._batch_len // 2):
            self._read_next()
        return content

    def _read_next(self) -> None:
        self._batch_scale = min(2 * self._batch_scale, _MAX_SCALE)
        self._read_from(self._ahead_from)

    def _read_first(self) -> None:
        """Read the first batch ahead, from message 1, when nothing was read yet.

        After a whole LIST or UIDL the client most often goes on with RETR 1: the
        first batch (the first bounds) is read while the listing is taken in and
        the next command is on its way, not when the first RETR has arrived. A
        session that only logs in (and STATs) reads nothing ahead; one that lists
        holds at most the first batch, as one that RETRs message 1 does.
        """
        if self._readahead or self._prefetch is not None or self._ahead_from \
                or not self._count:
            return
        self._batch_scale = 1
        self._read_from(0)

    def _read_from(self, start: int) -> None:
        """Read the batch from index ``start`` on a reader thread (``_prefetch``)."""
        generation = self._generation

        def merge(found: dict) -> None:
            if generation == self._generation:
                self._readahead.update(found)
                self._prefetch = None

        def failed(_failure) -> None:
            # Nothing is lost: the RETR that needs these messages reads them itself.
            if generation == self._generation:
                self._prefetch = None
        self._prefetch = self.backend.open_messages(self._batch(start))
        self._prefetch.addCallbacks(merge, failed)

    def _message(self, arg: str) -> int | None:
        """The message number of a message-number argument, or None after -ERR."""
        if not _NUMBER.match(arg or ""):
            self.send("-ERR a message number is required")
            return None
        number = int(arg)
        if not 1 <= number <= len(self._drop) or number - 1 in self._deleted:
            self.send(f"-ERR no such message: {number}")
            return None
        return number

    def do_STAT(self, _arg: str) -> None:
        self.send(f"+OK {self._count} {self._octets}")

    def _listing(self, arg: str, header: str, lines: list[bytes]) -> None:
        if arg:
            number = self._message(arg)
            if number:
                self.transport.write(b"+OK " + lines[number - 1])
            return
        self._flow.send_now(self.transport, b"".join((
            b"+OK %s\r\n" % header.encode("ascii"),
            self._drop.listing(lines, self._deleted), b".\r\n")))
        # The first batch is read once the listing is on its way, so that the read
        # does not compete with the sending of a listing over the buffer bound.
        if self._flow.blocked:
            self._read_first_when_drained = True
        else:
            self._read_first()

    def do_LIST(self, arg: str) -> None:
        self._listing(arg, f"{self._count} messages ({self._octets} octets)",
                      self._drop.list_lines)

    def do_UIDL(self, arg: str) -> None:
        self._listing(arg, "unique-id listing follows", self._drop.uidl_lines)

    def do_RETR(self, arg: str):
        number = self._message(arg)
        if not number:
            return None
        self._last = max(self._last, number)
        whole = self._read_ahead_response(number)
        if whole is not None:
            self._flow.send_now(self.transport, whole)
            return None
        return self._send_message(number)

    def _read_ahead_response(self, number: int) -> bytes | None:
        """The whole RETR response of a small message already read ahead, else None.

        Most mail is small and was read in the batch of an earlier RETR: its response
        is written at once, in one piece, without a streamer or a Deferred. At most
        :data:`CHUNK` octets, so flow control still holds (the next command waits
        while the transport's buffer is over its bound).
        """
        wanted = self._drop.ids[number - 1]
        content = self._readahead.get(wanted)
        if content is None or not content.source.in_memory or content.size > CHUNK:
            return None
        self._take(wanted)
        return whole_response(b"+OK %d octets\r\n" % self._drop.sizes[number - 1],
                              content.prefix, content.source.read())

    def do_TOP(self, arg: str):
        number, _, lines = arg.partition(" ")
        lines = lines.strip()
        if not _NUMBER.match(lines):
            return self.send("-ERR usage: TOP message-number lines")
        number = self._message(number)
        if not number:
            return None
        return self._send_message(number, top_lines=int(lines))

    def do_DELE(self, arg: str) -> None:
        number = self._message(arg)
        if not number:
            return
        self._deleted.add(number - 1)
        self._count -= 1
        self._octets -= self._drop.sizes[number - 1]
        self.send(f"+OK message {number} deleted")

    def do_NOOP(self, _arg: str) -> None:
        self.send("+OK")

    def do_RSET(self, _arg: str) -> None:
        self._deleted.clear()
        self._count = len(self._drop)
        self._octets = self._drop.octets
        self._last = 0
        self.send(f"+OK maildrop has {self._count} messages ({self._octets} octets)")

    def do_LAST(self, _arg: str) -> None:
        self.send(f"+OK {self._last}")
