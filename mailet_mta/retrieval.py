"""How the retrieval servers reach the users' mailboxes (the :class:`IMailStore`).

The mirror of :mod:`mailet_mta.acceptance`: logins go through the shared
Authenticator, mailbox leases through ``mailbox_locks``, listings and contents through
``storage.mailboxes`` — every read on a reader thread, every write through the
database writer, never on the reactor. Listings read at recent logins are kept in a
:class:`ListingCache` while their folder is unchanged.
"""

from __future__ import annotations

import os
import uuid

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import classImplements, implementer

from .folder_views import (
    ListingCache,
    SnapshotCache,
    load_listing,
    load_snapshot,
    read_changes,
    status_of,
    watched_states,
)
from .folder_watch import FolderWatcher, change_feed
from .mailstore import (
    SPECIAL_USE_FOLDERS,
    SYSTEM_FLAGS,
    FolderStatus,
    IAppend,
    IMailStore,
    IMessageContent,
    LeaseLost,
    MessageTooLarge,
    NoSuchFolder,
    StoreResult,
    canonical_folder,
)
from .storage import folder_changes, folders, mailboxes, message_copies
from .storage.mailbox_locks import acquire_lock, refresh_lock, release_lock

__all__ = ["DatabaseMailStore", "ListingCache", "SnapshotCache", "load_listing",
           "load_snapshot", "read_changes", "FolderWatcher"]

log = Logger(namespace="mailet_mta.retrieval")

# APPEND's bound when none is configured (RFC 7889 APPENDLIMIT): the size mail clients
# are used to being refused above.
DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024

# Storage's MessageContent (prefix + blob) is what IMessageContent describes.
classImplements(mailboxes.MessageContent, IMessageContent)


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
                 snapshot_cache_messages: int = 500_000,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE):
        self.db = db
        self.blobs = blobs
        self.authenticator = authenticator
        self.node_name = node_name
        self.folder = folder
        self.listings = ListingCache()
        self.snapshots = SnapshotCache(snapshot_cache_messages)
        self.tombstone_limit = tombstone_limit
        self.max_message_size = max_message_size or DEFAULT_MAX_MESSAGE_SIZE
        self.changes_committed = 0
        self.watcher = FolderWatcher(self._states, poll_interval, max_watched,
                                     feed=change_feed(db.engine))

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
            return status_of(folder, state)
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

    def read_headers_of(self, message_ids, limit: int) -> defer.Deferred:
        return self.db.read(mailboxes.read_headers_of, self.blobs, list(message_ids), limit)

    def load_listing(self, user: str, folder: str) -> defer.Deferred:
        return self.db.read(load_listing, user, folder, self.listings)

    def open_message(self, message_id: int) -> defer.Deferred:
        return self.db.read(mailboxes.message_content, self.blobs, message_id)

    def open_messages(self, message_ids) -> defer.Deferred:
        return self.db.read(mailboxes.message_contents, self.blobs, list(message_ids))

    def read_messages(self, message_ids) -> defer.Deferred:
        return self.db.read(mailboxes.read_messages, self.blobs, list(message_ids))

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

    def begin_append(self, user: str, folder: str) -> _Append:
        return _Append(self, user, canonical_folder(folder))

    def copy_messages(self, user: str, message_ids, dest_folder: str) -> defer.Deferred:
        d = self.db.write(message_copies.copy_messages, user, list(message_ids),
                          dest_folder)
        return d.addCallback(self._told, user, canonical_folder(dest_folder))

    def move_messages(self, user: str, folder: str, message_ids,
                      dest_folder: str) -> defer.Deferred:
        d = self.db.write(message_copies.copy_messages, user, list(message_ids),
                          dest_folder, folder, self.tombstone_limit)
        d.addCallback(self._told, user, canonical_folder(dest_folder))
        return d.addCallback(self._told, user, canonical_folder(folder))

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
        self.changes_committed += 1
        if removed:
            self.watcher.poll_now([(user, folder)])
        return removed

    # -- change notifications -------------------------------------------------------------
    def subscribe(self, user: str, folder: str, listener):
        return self.watcher.subscribe(user, canonical_folder(folder), listener)

    def _states(self, keys, last) -> defer.Deferred:
        return self.db.read(watched_states, keys, last)


@implementer(IAppend)
class _Append:
    """One APPEND: the body streams into a blob writer as SMTP DATA does (memory, then
    an unsynced file past the inline limit; fsynced in a thread at the end), and the
    message row is added in one write transaction."""

    def __init__(self, store: DatabaseMailStore, user: str, folder: str):
        self.store, self.user, self.folder = store, user, folder
        self.limit = store.max_message_size
        self._writer = store.blobs.writer()
        self.size = 0
        self._done = False

    def write(self, data: bytes) -> None:
        if self._done:
            raise RuntimeError("the append is finished")
        self.size += len(data)
        if self.size > self.limit:
            self._writer.abort()           # the rest is only counted
            return
        self._writer.write(data)

    def abort(self) -> None:
        self._done = True
        self._writer.abort()

    def finish(self, flags, internal_date: float | None = None) -> defer.Deferred:
        if self._done:
            return defer.fail(RuntimeError("the append is finished"))
        self._done = True
        try:
            text = " ".join(sorted(_check_flags(flags)))
        except ValueError as exc:
            self._writer.abort()
            return defer.fail(exc)
        if self.size > self.limit:
            self._writer.abort()
            return defer.fail(MessageTooLarge(self.size, self.limit))
        d = self._writer.finish()
        d.addCallback(self._store, text, internal_date)
        return d

    def _store(self, ref, flags: str, internal_date: float | None) -> defer.Deferred:
        store = self.store
        d = store.db.write(message_copies.append_message, self.user, self.folder, ref,
                           flags, internal_date)

        def failed(failure):
            if ref.data is None:          # a file with no row: remove it now
                path = store.blobs.path_for(ref.id)
                return threads.deferToThread(_unlink_quietly, path).addCallback(
                    lambda _: failure)
            return failure
        d.addErrback(failed)
        return d.addCallback(store._told, self.user, self.folder)


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
