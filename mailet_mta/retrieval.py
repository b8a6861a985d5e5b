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

from .mailstore import (SYSTEM_FLAGS, FolderStatus, IFolderSubscription, IMailStore,
                        IMessageContent, LeaseLost, MessageList, NoSuchFolder)
from .storage import mailboxes
from .storage.mailbox_locks import acquire_lock, refresh_lock, release_lock

__all__ = ["DatabaseMailStore", "ListingCache", "load_listing", "FolderWatcher"]

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


def _status(name: str, state) -> FolderStatus:
    """A FolderStatus from ``mailbox_state``'s ``(id, uid_validity, uid_next, count)``."""
    return FolderStatus(name, state[1], state[2], state[3])


def _parse_flags(text: str) -> frozenset:
    return frozenset(text.split())


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
                 poll_interval: float = 5.0, max_watched: int = 10_000):
        self.db = db
        self.blobs = blobs
        self.authenticator = authenticator
        self.node_name = node_name
        self.folder = folder
        self.listings = ListingCache()
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
        def answer(state):
            if state is None:
                raise NoSuchFolder(f"{user} has no folder {folder!r}")
            return _status(folder, state)
        return self.db.read(mailboxes.mailbox_state, user, folder).addCallback(answer)

    def create_folder(self, user: str, folder: str) -> defer.Deferred:
        d = self.db.write(mailboxes.get_or_create_mailbox, user, folder)
        return d.addCallback(lambda _: self.folder_status(user, folder))

    # -- messages -------------------------------------------------------------------------
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
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"mode must be add, remove or replace, not {mode!r}")
        flags = _check_flags(flags)
        ids = list(message_ids)

        def update(conn):
            new = {}
            for mid, text in mailboxes.message_flags(conn, ids).items():
                old = _parse_flags(text)
                new[mid] = (old | flags if mode == "add" else
                            old - flags if mode == "remove" else flags)
            mailboxes.store_flags(conn, {mid: " ".join(sorted(f))
                                         for mid, f in new.items()})
            return new
        return self.db.write(update)

    def expunge(self, user: str, folder: str, message_ids) -> defer.Deferred:
        d = self.db.write(mailboxes.delete_folder_messages, user, folder, list(message_ids))
        return d.addCallback(self._told, user, folder)

    def finish(self, user: str, owner: str, message_ids) -> defer.Deferred:
        ids = list(message_ids)

        def update(conn):
            if ids and not refresh_lock(conn, user, owner, self.lease_seconds):
                raise LeaseLost(user)
            removed = mailboxes.delete_messages(conn, ids) if ids else 0
            release_lock(conn, user, owner)
            return removed
        return self.db.write(update).addCallback(self._told, user, self.folder)

    def _told(self, removed: int, user: str, folder: str) -> int:
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
                if tell and state is not None:
                    self._tell(key, _status(key[1], state))
        d = self.read_states(keys).addCallback(compare)
        d.addErrback(lambda f: log.failure("reading folder states failed", f))
        return d

    def _tell(self, key, status: FolderStatus) -> None:
        for sub in list(self._subscribers.get(key, ())):
            try:
                sub.listener(status)
            except Exception:
                log.failure("a folder listener failed")
