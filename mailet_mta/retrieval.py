"""How the retrieval servers reach the users' mailboxes (the :class:`IMailStore`).

The mirror of :mod:`mailet_mta.acceptance`: logins go through the shared
Authenticator, mailbox leases through ``mailbox_locks``, listings and contents through
``storage.mailboxes`` — every read on a reader thread, every write through the
database writer, never on the reactor. Listings read at recent logins are kept in a
:class:`ListingCache` while their folder is unchanged.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import classImplements, implementer

from .mailstore import (
    SPECIAL_USE_FOLDERS,
    SYSTEM_FLAGS,
    FolderChanges,
    FolderSnapshot,
    FolderStatus,
    IFolderSubscription,
    IMailStore,
    IMessageContent,
    LeaseLost,
    MessageList,
    NoSuchFolder,
    StoreResult,
    canonical_folder,
)
from .storage import folder_changes, folders, mailboxes
from .storage.mailbox_locks import acquire_lock, refresh_lock, release_lock

__all__ = ["DatabaseMailStore", "ListingCache", "SnapshotCache", "load_listing",
           "load_snapshot", "read_changes", "FolderWatcher"]

log = Logger(namespace="mailet_mta.retrieval")

# Storage's MessageContent (prefix + blob) is what IMessageContent describes.
classImplements(mailboxes.MessageContent, IMessageContent)


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
    _box, uid_validity, uid_next, highest, special_use, _horizon = head
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
    state = mailboxes.mailbox_state(conn, user, folder)
    if head is None or state is None:
        raise NoSuchFolder(f"{user} has no folder {folder!r}")
    changes = _changes_at(conn, folder, head, since, state[3])
    if changes is None:
        rows = _rows_as_changes(folder_changes.changed_rows(conn, head[0], since))
        last_uid = rows[-1][1] if rows else 0
        changes = FolderChanges(_head_status(folder, head, state[3], last_uid), rows, None)
    return changes


def _status(name: str, state) -> FolderStatus:
    """A FolderStatus from ``mailbox_state``'s ``(id, uid_validity, uid_next, count,
    highest_modseq, special_use)``."""
    return FolderStatus(name, *state[1:6])


def _parse_flags(text: str) -> frozenset:
    return frozenset(text.split())


def flag_change(mode: str, flags: frozenset):
    """``compute(message id, old flags text) -> new flags text`` for ``mode`` "add",
    "remove" or "replace" (IMAP ``+FLAGS``, ``-FLAGS``, ``FLAGS``); ValueError for
    another mode. The text is the flags space-separated in sorted order."""
    if mode not in ("add", "remove", "replace"):
        raise ValueError(f"mode must be add, remove or replace, not {mode!r}")
    replaced = " ".join(sorted(flags))

    def compute(_mid, old: str) -> str:
        if mode == "replace":
            return replaced
        have = set(old.split())
        new = have | flags if mode == "add" else have - flags
        return old if new == have else " ".join(sorted(new))
    return compute


def _check_flags(flags) -> frozenset:
    out = frozenset(flags)
    for flag in out:
        if not flag or any(c <= " " or c == "\x7f" for c in flag) or (
                flag.startswith("\\") and flag not in SYSTEM_FLAGS):
            raise ValueError(f"not a valid flag: {flag!r}")
    return out


@implementer(IMailStore)
class DatabaseMailStore:
    """IMailStore over the database, the blob store and the authenticator.

    ``node_name`` names this process in mailbox leases (so leases left by a dead
    process can be told apart); ``folder`` is the folder POP3 serves.
    """

    lease_seconds = 120.0

    def __init__(self, db, blobs, authenticator, node_name: str, folder: str = "INBOX",
                 poll_interval: float = 5.0, max_watched: int = 10_000,
                 tombstone_limit: int = folder_changes.TOMBSTONE_LIMIT,
                 snapshot_cache_messages: int = 500_000):
        self.db = db
        self.blobs = blobs
        self.authenticator = authenticator
        self.node_name = node_name
        self.folder = folder
        self.listings = ListingCache()
        self.snapshots = SnapshotCache(snapshot_cache_messages)
        self.tombstone_limit = tombstone_limit
        self.watcher = FolderWatcher(self._states, poll_interval, max_watched)

    def prepare(self) -> defer.Deferred:
        return defer.gatherResults([self.authenticator.prepare(),
                                    self.db.read(load_listing, "", self.folder,
                                                 self.listings)],
                                   consumeErrors=True)

    # -- logins and leases ----------------------------------------------------------------
    def check_login(self, username: str, password: str, client_ip: str) -> defer.Deferred:
        return self.authenticator.check(username, password, client_ip)

    def is_throttled(self, client_ip: str) -> bool:
        return self.authenticator.is_throttled(client_ip)

    def new_owner(self) -> str:
        return f"{self.node_name}/{uuid.uuid4().hex[:16]}"

    def lock(self, user: str, owner: str) -> defer.Deferred:
        return self.db.write(acquire_lock, user, owner, self.lease_seconds)

    def refresh(self, user: str, owner: str) -> defer.Deferred:
        return self.db.write(refresh_lock, user, owner, self.lease_seconds)

    def unlock(self, user: str, owner: str) -> defer.Deferred:
        return self.db.write(release_lock, user, owner)

    # -- folders --------------------------------------------------------------------------
    def list_folders(self, user: str) -> defer.Deferred:
        d = self.db.read(mailboxes.folder_states, user)
        return d.addCallback(lambda rows: [FolderStatus(*row) for row in rows])

    def folder_status(self, user: str, folder: str) -> defer.Deferred:
        folder = canonical_folder(folder)

        def answer(state):
            if state is None:
                raise NoSuchFolder(f"{user} has no folder {folder!r}")
            return _status(folder, state)
        return self.db.read(mailboxes.mailbox_state, user, folder).addCallback(answer)

    def create_folder(self, user: str, folder: str, exclusive: bool = False) -> defer.Deferred:
        folder = folders.check_name(folder)
        d = self.db.write(folders.create_folder, user, folder, exclusive)
        return d.addCallback(lambda _: self.folder_status(user, folder))

    def delete_folder(self, user: str, folder: str) -> defer.Deferred:
        d = self.db.write(folders.delete_folder, user, folder)
        return d.addCallback(lambda box: self.watcher.poll_boxes([box]))

    def rename_folder(self, user: str, old: str, new: str) -> defer.Deferred:
        d = self.db.write(folders.rename_folder, user, old, new)
        return d.addCallback(self.watcher.poll_boxes)

    def ensure_user_folders(self, user: str) -> defer.Deferred:
        def created(names):
            return None if not names else self.db.write(folders.ensure_user_folders, user)

        def check(conn):
            have = {row[0] for row in mailboxes.folder_states(conn, user)}
            return [name for name in ("INBOX", *dict(SPECIAL_USE_FOLDERS)) if name not in have]
        return self.db.read(check).addCallback(created).addCallback(lambda _: None)

    def subscriptions(self, user: str) -> defer.Deferred:
        return self.db.read(folders.subscriptions, user)

    def set_subscribed(self, user: str, folder: str, on: bool) -> defer.Deferred:
        folders.check_name(folder)
        return self.db.write(folders.set_subscribed, user, folder, bool(on))

    def quota(self, user: str) -> defer.Deferred:
        return self.db.read(mailboxes.user_quota, user)

    # -- messages -------------------------------------------------------------------------
    def read_headers(self, message_id: int, limit: int) -> defer.Deferred:
        return self.db.read(mailboxes.read_headers, self.blobs, message_id, limit)

    def load_listing(self, user: str, folder: str) -> defer.Deferred:
        return self.db.read(load_listing, user, folder, self.listings)

    def open_message(self, message_id: int) -> defer.Deferred:
        return self.db.read(mailboxes.message_content, self.blobs, message_id)

    def open_messages(self, message_ids) -> defer.Deferred:
        return self.db.read(mailboxes.message_contents, self.blobs, list(message_ids))

    def get_flags(self, message_ids) -> defer.Deferred:
        d = self.db.read(mailboxes.message_flags, list(message_ids))
        return d.addCallback(lambda found: {mid: _parse_flags(text)
                                            for mid, text in found.items()})

    def set_flags(self, message_ids, flags, mode: str) -> defer.Deferred:
        d = self.store_flags(message_ids, flags, mode)
        return d.addCallback(lambda result: {mid: flags for mid, (flags, _modseq)
                                             in result.updated.items()})

    def store_flags(self, message_ids, flags, mode: str,
                    unchanged_since: int | None = None) -> defer.Deferred:
        compute = flag_change(mode, _check_flags(flags))
        ids = list(message_ids)

        def update(conn):
            return folder_changes.change_flags(conn, ids, compute, unchanged_since)

        def answer(result):
            updated, failed, boxes = result
            if boxes:
                self.watcher.poll_boxes(boxes)
            return StoreResult({mid: (_parse_flags(text), modseq)
                                for mid, (text, modseq) in updated.items()}, failed)
        return self.db.write(update).addCallback(answer)

    def expunge(self, user: str, folder: str, message_ids) -> defer.Deferred:
        return self.expunge_messages(user, folder, message_ids).addCallback(len)

    def expunge_messages(self, user: str, folder: str, message_ids) -> defer.Deferred:
        folder = canonical_folder(folder)
        d = self.db.write(mailboxes.expunge_folder_messages, user, folder,
                          list(message_ids), self.tombstone_limit)
        return d.addCallback(self._told, user, folder)

    # -- IMAP views of a folder -----------------------------------------------------------
    def select(self, user: str, folder: str) -> defer.Deferred:
        folder = canonical_folder(folder)
        return self.db.read(load_snapshot, user, folder, self.snapshots)

    def changes(self, user: str, folder: str, since_modseq: int) -> defer.Deferred:
        folder = canonical_folder(folder)
        return self.db.read(read_changes, user, folder, since_modseq)

    def finish(self, user: str, owner: str, message_ids) -> defer.Deferred:
        ids = list(message_ids)

        def update(conn):
            if ids and not refresh_lock(conn, user, owner, self.lease_seconds):
                raise LeaseLost(user)
            removed = mailboxes.delete_messages(conn, ids, self.tombstone_limit) if ids else 0
            release_lock(conn, user, owner)
            return removed
        return self.db.write(update).addCallback(self._told, user, self.folder)

    def _told(self, removed, user: str, folder: str):
        if removed:
            self.watcher.poll_now([(user, folder)])
        return removed

    # -- change notifications -------------------------------------------------------------
    def subscribe(self, user: str, folder: str, listener):
        return self.watcher.subscribe(user, folder, listener)

    def _states(self, keys) -> defer.Deferred:
        def read(conn):
            return {key: mailboxes.mailbox_state(conn, *key) for key in keys}
        return self.db.read(read)


@implementer(IFolderSubscription)
class _Subscription:
    def __init__(self, watcher: FolderWatcher, key, listener):
        self.watcher, self.key, self.listener = watcher, key, listener

    def cancel(self) -> None:
        self.watcher.unsubscribe(self)


class FolderWatcher:
    """Tells subscribers when a folder's state changes, whoever changed it.

    While anything is subscribed, the states of the watched folders are read every
    ``interval`` seconds in one read (one indexed row and a count per folder) and
    compared with the last ones; a change made through this store is polled at once.
    At most ``max_watched`` folders are watched (a further subscribe raises
    OverflowError). ``read_states(keys)`` → Deferred {key: mailbox_state or None}.
    """

    def __init__(self, read_states, interval: float = 5.0, max_watched: int = 10_000,
                 clock=None):
        self.read_states = read_states
        self.interval = interval
        self.max_watched = max_watched
        self.clock = clock
        self._subscribers: dict[tuple, list] = {}
        self._last: dict[tuple, object] = {}
        self._loop: task.LoopingCall | None = None

    def subscribe(self, user: str, folder: str, listener) -> _Subscription:
        key = (user, folder)
        if key not in self._subscribers and len(self._subscribers) >= self.max_watched:
            raise OverflowError(f"already watching {self.max_watched} folders")
        sub = _Subscription(self, key, listener)
        self._subscribers.setdefault(key, []).append(sub)
        if key not in self._last:
            self._last[key] = None
            self.poll_now([key], tell=False)
        if self._loop is None:
            self._loop = task.LoopingCall(self._poll)
            if self.clock is not None:
                self._loop.clock = self.clock
            self._loop.start(self.interval, now=False).addErrback(
                lambda f: log.failure("folder watcher stopped", f))
        return sub

    def unsubscribe(self, sub: _Subscription) -> None:
        subs = self._subscribers.get(sub.key, [])
        if sub in subs:
            subs.remove(sub)
        if not subs and sub.key in self._subscribers:
            del self._subscribers[sub.key]
            self._last.pop(sub.key, None)
        if not self._subscribers and self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None

    def poll_boxes(self, box_ids) -> defer.Deferred:
        """Poll the watched folders whose mailbox id is in ``box_ids`` (changed here)."""
        ids = set(box_ids)
        return self.poll_now([key for key, state in self._last.items()
                              if state is not None and state[0] in ids])

    def _poll(self):
        return self.poll_now(list(self._subscribers))

    def poll_now(self, keys, tell: bool = True) -> defer.Deferred:
        """Read the states of ``keys`` (those watched) and tell what changed."""
        keys = [k for k in keys if k in self._subscribers]
        if not keys:
            return defer.succeed(None)

        def compare(states):
            for key, state in states.items():
                if key not in self._subscribers or state == self._last.get(key):
                    continue
                self._last[key] = state
                if tell:        # None: the folder was deleted or renamed away
                    self._tell(key, None if state is None else _status(key[1], state))
        d = self.read_states(keys).addCallback(compare)
        d.addErrback(lambda f: log.failure("reading folder states failed", f))
        return d

    def _tell(self, key, status: FolderStatus | None) -> None:
        for sub in list(self._subscribers.get(key, ())):
            try:
                sub.listener(status)
            except Exception:  # noqa: BLE001 - one listener's bug must not stop the others
                log.failure("a folder listener failed")
