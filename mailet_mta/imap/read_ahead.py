"""Read-ahead of small whole messages for clients that FETCH one message at a time.

A client that downloads a folder with ``FETCH n BODY.PEEK[]``, ``n+1``, ``n+2`` … pays a
store read (a thread hop, a query, a file read) per command. When a session fetches,
whole, the message right after the last one it fetched whole, the messages that follow
it in the folder are read in the same store read, up to :data:`READ_AHEAD_OCTETS`, and
kept here, so the next commands are answered from memory, on the reactor, with no
Deferred.

Bounds and freshness:

- at most :data:`READ_AHEAD_OCTETS` per session, only messages of at most
  :data:`READ_AHEAD_MESSAGE` octets, and each kept message is handed out once (it is
  dropped as it is served);
- dropped when the session learns that the folder changed (another session's STORE or
  EXPUNGE, a delivery: the store's change notification), when the folder is closed,
  and :data:`READ_AHEAD_SECONDS` after the last store read that added to it; never
  served while a change is known and not yet told (``dirty``); so a message expunged
  elsewhere is not served from here once the session was told of the change, and a
  session that stops fetching holds nothing for long;
- only octets are kept: flags, sizes and dates always come from the session's view of
  the folder, and ``\\Seen`` is set by the store as for any other FETCH.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ReadAhead", "READ_AHEAD_OCTETS", "READ_AHEAD_MESSAGE", "READ_AHEAD_COUNT",
           "READ_AHEAD_SECONDS"]

READ_AHEAD_OCTETS = 256 * 1024   # kept per session
READ_AHEAD_MESSAGE = 64 * 1024   # larger messages are never read ahead
READ_AHEAD_COUNT = 64            # messages read ahead at most in one store read
READ_AHEAD_SECONDS = 5.0         # kept at most this long after the read


class ReadAhead:
    """The octets read ahead for one session's selected folder: ``{message id:
    octets}``, at most :data:`READ_AHEAD_OCTETS` in all. ``call_later`` is the
    reactor's (or a test clock's) ``callLater``, for the expiry."""

    def __init__(self, call_later):
        self._call_later = call_later
        self._octets: dict[int, bytes] = {}
        self._held = 0
        self._expiry = None
        self._last_uid = 0          # the UID last fetched whole (0: none)
        self._mark = -1             # the store's changes_committed of the kept octets

    @property
    def held(self) -> int:
        """Octets kept now."""
        return self._held

    def __len__(self) -> int:
        return len(self._octets)

    def clear(self) -> None:
        """Forget everything read ahead (the folder changed or was closed)."""
        self._drop()
        self._last_uid = 0

    def _drop(self) -> None:
        if self._octets:
            self._octets = {}
            self._held = 0
        if self._expiry is not None:
            if self._expiry.active():
                self._expiry.cancel()
            self._expiry = None

    def take(self, message_ids: Sequence[int], mark: int) -> list[bytes] | None:
        """The octets of all of ``message_ids``, removed from here; None (and nothing
        removed) unless every one of them is kept. ``mark`` is the store's
        ``changes_committed``: when it moved since the read, everything is dropped."""
        if mark != self._mark:
            self._drop()
            return None
        octets = self._octets
        for mid in message_ids:
            if mid not in octets:
                return None
        out = [octets.pop(mid) for mid in message_ids]
        self._held -= sum(map(len, out))
        return out

    def plan(self, sel, indexes: Sequence[int]) -> list[int]:
        """The indexes to read with ``indexes`` (a FETCH of whole messages about to
        read them from the store): the messages after the last of ``indexes``, while
        they are small and fit the bound, when the fetch continues the previous one
        (its first message comes right after the one last fetched whole); else none."""
        if not indexes:
            return []
        first, last = indexes[0], indexes[-1]
        continues = first > 0 and sel.uids[first - 1] == self._last_uid
        self._last_uid = sel.uids[last]
        if not continues:
            return []
        room = READ_AHEAD_OCTETS - self._held
        ahead: list[int] = []
        sizes = sel.sizes
        for i in range(last + 1, min(len(sel), last + 1 + READ_AHEAD_COUNT)):
            size = sizes[i]
            if size > READ_AHEAD_MESSAGE or size > room:
                break
            ahead.append(i)
            room -= size
        return ahead

    def served(self, sel, indexes: Sequence[int]) -> None:
        """``indexes`` were answered from here: the next fetch that follows them
        continues the run."""
        if indexes:
            self._last_uid = sel.uids[indexes[-1]]

    def keep(self, found: dict[int, bytes], message_ids: Sequence[int], mark: int) -> None:
        """Keep the octets of those of ``message_ids`` that ``found`` has (a store
        read's answer), within the bound; ``mark`` is the store's
        ``changes_committed`` when the read began."""
        if mark != self._mark:
            self._drop()
            self._mark = mark
        for mid in message_ids:
            data = found.get(mid)
            if data is None or mid in self._octets:
                continue
            if self._held + len(data) > READ_AHEAD_OCTETS:
                break
            self._octets[mid] = data
            self._held += len(data)
        if not self._octets:
            return
        if self._expiry is None:
            self._expiry = self._call_later(READ_AHEAD_SECONDS, self._expired)
        else:
            self._expiry.reset(READ_AHEAD_SECONDS)

    def forget(self, message_ids: Sequence[int]) -> None:
        """Drop what is kept of ``message_ids`` (they were read from the store)."""
        for mid in message_ids:
            data = self._octets.pop(mid, None)
            if data is not None:
                self._held -= len(data)

    def _expired(self) -> None:
        self._expiry = None
        self.clear()
