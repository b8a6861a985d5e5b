"""Folder views read for the retrieval servers, and their caches: POP3 listings
(:class:`~mailet_mta.mailstore.MessageList`) and IMAP snapshots
(:class:`~mailet_mta.mailstore.FolderSnapshot`) and changes.

Every function taking ``conn`` runs on a reader thread, never on the reactor.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import bindparam, select

from .mailstore import FolderChanges, FolderSnapshot, FolderStatus, MessageList, NoSuchFolder
from .storage import folder_changes, mailboxes, schema

__all__ = ["ListingCache", "SnapshotCache", "load_listing", "load_snapshot", "read_changes",
           "status_of", "watched_states"]


class ListingCache:
    """The listings read at recent logins, reused while their folder is unchanged.

    A POP3 client polls the same mailbox every few minutes and most polls find it as
    it was: the next login then checks the folder's state (one row and a count) instead
    of reading and rendering every message again. A listing is kept under the state
    read *before* it was loaded and only when its length agrees with that state, so a
    delivery racing the load makes a miss, never a stale hit. At most ``max_messages``
    messages' listings are kept (least recently used go first).
    """

    def __init__(self, max_messages: int = 200_000):
        self.max_messages = max_messages
        self._entries: OrderedDict = OrderedDict()     # (user, folder) → (state, list)
        self._messages = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key, state) -> MessageList | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != state:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key, state, listing: MessageList) -> None:
        if len(listing) > self.max_messages:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._messages -= len(old[1])
            self._entries[key] = (state, listing)
            self._messages += len(listing)
            while self._messages > self.max_messages:
                _key, (_state, evicted) = self._entries.popitem(last=False)
                self._messages -= len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._messages = 0


def load_listing(conn, user: str, folder: str,
                 cache: ListingCache | None = None) -> MessageList:
    """On a reader thread: the message list of (user, folder), rendered — from
    ``cache`` (one per database) when the folder has not changed since it was last
    read."""
    state = mailboxes.mailbox_state(conn, user, folder) if cache is not None else None
    if state is None:
        return MessageList(mailboxes.message_row_chunks(conn, user, folder))
    key = (user, folder)
    listing = cache.get(key, state)
    if listing is None:
        listing = MessageList(mailboxes.message_row_chunks(conn, user, folder))
        if len(listing) == state[3]:
            cache.put(key, state, listing)
    return listing


class SnapshotCache(ListingCache):
    """The IMAP snapshots of recently selected folders (see :func:`load_snapshot`),
    kept under the folder head they were read at; at most ``max_messages`` messages
    in all."""

    def entry(self, key):
        """``(state, snapshot)`` last kept for ``key``, whatever its state, or None."""
        with self._lock:
            return self._entries.get(key)


def _head_status(name: str, head, messages: int, last_uid: int = 0) -> FolderStatus:
    """A FolderStatus from ``folder_head``'s row."""
    _box, uid_validity, uid_next, highest, special_use, _horizon, _count = head
    return FolderStatus(name, uid_validity, max(uid_next, last_uid + 1), messages,
                        highest, special_use)


def _rows_as_changes(rows) -> list:
    interned: dict[str, frozenset] = {}
    out = []
    for mid, uid, size, date, modseq, text in rows:
        flags = interned.get(text)
        if flags is None:
            flags = interned[text] = frozenset(text.split())
        out.append((mid, uid, size, date, modseq, flags))
    return out


def _changes_at(conn, folder: str, head, since: int,
                messages: int | None = None) -> FolderChanges | None:
    """The changes of the folder ``head`` describes since ``since``, or None when its
    tombstones of that time are purged."""
    box = head[0]
    expunged = folder_changes.expunged_since(conn, box, since, head[5])
    if expunged is None:
        return None
    rows = _rows_as_changes(folder_changes.changed_rows(conn, box, since))
    last_uid = rows[-1][1] if rows else 0
    return FolderChanges(_head_status(folder, head, messages or 0, last_uid), rows, expunged)


def load_snapshot(conn, user: str, folder: str, cache: SnapshotCache) -> FolderSnapshot:
    """On a reader thread: the :class:`FolderSnapshot` of (user, folder).

    The cache answers when the folder's head (uid_validity, uid_next,
    highest_modseq…) is the one its snapshot was read at; when the folder changed
    since, the cached snapshot is brought up to date with what changed (two indexed
    range reads) instead of reading every row. A snapshot is kept only when the head
    read after it equals the one read before (nothing raced the read). NoSuchFolder
    when the folder does not exist.
    """
    key = (user, folder)
    head = folder_changes.folder_head(conn, user, folder)
    snapshot = None
    for _attempt in range(3):
        if head is None:
            raise NoSuchFolder(f"{user} has no folder {folder!r}")
        head = tuple(head)
        entry = cache.entry(key)
        snapshot = None
        if entry is not None and entry[0] == head:
            return cache.get(key, head) or entry[1]
        if entry is not None and entry[0][:2] == head[:2] and entry[0][3] <= head[3]:
            changes = _changes_at(conn, folder, head, entry[0][3])
            if changes is not None:
                snapshot = entry[1].with_changes(changes)
        if snapshot is None:
            snapshot = FolderSnapshot(None, folder_changes.snapshot_row_chunks(conn, head[0]))
        snapshot.status = _head_status(folder, head, len(snapshot),
                                       snapshot.uids[-1] if len(snapshot) else 0)
        after = folder_changes.folder_head(conn, user, folder)
        if after is not None and tuple(after) == head:
            cache.put(key, head, snapshot)
            return snapshot
        head = after
    assert snapshot is not None
    return snapshot


def read_changes(conn, user: str, folder: str, since: int) -> FolderChanges:
    """On a reader thread: the :class:`FolderChanges` of (user, folder) since
    ``since`` (``expunged_uids`` None when its tombstones are purged)."""
    head = folder_changes.folder_head(conn, user, folder)
    if head is None:
        raise NoSuchFolder(f"{user} has no folder {folder!r}")
    count = head[6]
    changes = _changes_at(conn, folder, head, since, count)
    if changes is None:
        rows = _rows_as_changes(folder_changes.changed_rows(conn, head[0], since))
        last_uid = rows[-1][1] if rows else 0
        changes = FolderChanges(_head_status(folder, head, count, last_uid), rows, None)
    return changes


def status_of(name: str, state) -> FolderStatus:
    """A FolderStatus from ``mailbox_state``'s ``(id, uid_validity, uid_next, count,
    highest_modseq, special_use)``."""
    return FolderStatus(name, *state[1:6])


def watched_states(conn, keys, _last=None) -> dict:
    """On a reader thread: ``mailbox_state``-shaped tuples of the folders ``keys``
    ((user, folder) pairs), None for those that do not exist — one query for all
    (chunks of 500 users)."""
    wanted = set(keys)
    found = {}
    users = sorted({user for user, _folder in wanted})
    for start in range(0, len(users), 500):
        for row in conn.execute(_WATCHED_HEADS, {"b_users": users[start:start + 500]}):
            box, user, name, validity, uid_next, count, highest, special_use = row
            if (user, name) in wanted:
                found[(user, name)] = (box, validity, uid_next, count, highest, special_use)
    return {key: found.get(key) for key in keys}


_mb, _msg = schema.mailboxes, schema.messages
_WATCHED_HEADS = (select(_mb.c.id, _mb.c.user, _mb.c.name, _mb.c.uid_validity, _mb.c.uid_next,
                         _mb.c.message_count, _mb.c.highest_modseq, _mb.c.special_use)
                  .where(_mb.c.user.in_(bindparam("b_users", expanding=True))))
