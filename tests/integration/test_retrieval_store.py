"""The storage adapter behind IMailStore (SQLite and PostgreSQL): folders, flags,
expunge, and change notifications from other sessions."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from zope.interface.verify import verifyObject

from mailet_mta.mailstore import (
    FolderStatus,
    IMaildropStore,
    IMailStore,
    IMessageContent,
    NoSuchFolder,
)
from mailet_mta.retrieval import DatabaseMailStore
from mailet_mta.storage import mailboxes
from mailet_mta.storage.authenticator import Authenticator
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database
from tests.integration.pop3_server_fixture import USER, prepare_database
from tests.unit.pop3_memory_backend import MemoryBackend


@pytest.fixture
def store(migrated_db_url, tmp_path):
    prepare_database(migrated_db_url)
    db = Database(migrated_db_url)
    db.start()
    blobs = BlobStore(tmp_path / "blobs", inline_limit=4096)
    store = DatabaseMailStore(db, blobs, Authenticator(db, failure_delay=0), "node-a",
                              poll_interval=0.05)
    yield store
    pytest_twisted.blockon(db.stop())


def deliver(store, body: bytes, folder: str = "INBOX", prefix: bytes = b"") -> defer.Deferred:
    """A delivery as LocalDelivery makes it (not through the store: another writer)."""
    ref = store.blobs.from_bytes(body)

    def write(conn):
        BlobStore.insert_row(conn, ref)
        return mailboxes.store_message(conn, USER, folder, ref.id, prefix, ref.size)
    return store.db.write(write)


async def until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await task.deferLater(reactor, 0.02, lambda: None)


def test_both_stores_provide_the_interface(store):
    assert verifyObject(IMailStore, store)
    assert verifyObject(IMaildropStore, MemoryBackend())


@pytest_twisted.ensureDeferred
async def test_folders_have_uid_validity_and_the_next_uid(store):
    with pytest.raises(NoSuchFolder):
        await store.folder_status(USER, "Archive")
    created = await store.create_folder(USER, "Archive")
    assert (created.name, created.uid_next, created.messages) == ("Archive", 1, 0)
    await deliver(store, b"Subject: a\r\n\r\nx\r\n", "Archive")
    await deliver(store, b"Subject: i\r\n\r\nx\r\n")
    folders = await store.list_folders(USER)
    assert [(f.name, f.uid_next, f.messages) for f in folders] == [
        ("Archive", 2, 1), ("INBOX", 2, 1)]
    assert folders[0].uid_validity == created.uid_validity > 0
    assert await store.list_folders("nobody@example.com") == []


@pytest_twisted.ensureDeferred
async def test_listing_sizes_are_wire_octets_and_bodies_stream_in_chunks(store):
    body = b"Subject: big\r\n\r\n" + b"line of text\r\n" * 1000
    await deliver(store, body, prefix=b"Delivered-To: bob@example.com\r\n")
    listing = await store.load_listing(USER, "INBOX")
    assert list(listing.uids) == [1]
    content = await store.open_message(listing.ids[0])
    assert IMessageContent.providedBy(content)
    chunks = list(content.chunks(4096))
    assert max(map(len, chunks)) <= 4096
    assert b"".join(chunks) == b"Delivered-To: bob@example.com\r\n" + body
    assert listing.sizes[0] == content.size == len(b"".join(chunks))


@pytest_twisted.ensureDeferred
async def test_flags_are_added_removed_and_replaced(store):
    await deliver(store, b"Subject: f\r\n\r\nx\r\n")
    (mid,) = (await store.load_listing(USER, "INBOX")).ids
    assert await store.get_flags([mid]) == {mid: frozenset()}
    assert await store.set_flags([mid], {"\\Seen", "$Label1"}, "add") == {
        mid: frozenset({"\\Seen", "$Label1"})}
    assert await store.set_flags([mid], {"\\Seen"}, "remove") == {mid: {"$Label1"}}
    assert await store.set_flags([mid, 999999], {"\\Flagged"}, "replace") == {
        mid: {"\\Flagged"}}
    assert await store.get_flags([mid]) == {mid: {"\\Flagged"}}
    for bad in ({"two words"}, {"\\Recent2"}, {""}):
        with pytest.raises(ValueError):
            store.set_flags([mid], bad, "add")
    with pytest.raises(ValueError):
        store.set_flags([mid], {"\\Seen"}, "toggle")


@pytest_twisted.ensureDeferred
async def test_expunge_removes_only_messages_of_that_folder(store):
    await deliver(store, b"Subject: i\r\n\r\nx\r\n")
    await deliver(store, b"Subject: a\r\n\r\nx\r\n", "Archive")
    (inbox,) = (await store.load_listing(USER, "INBOX")).ids
    (archived,) = (await store.load_listing(USER, "Archive")).ids
    assert await store.expunge(USER, "INBOX", [inbox, archived]) == 1
    assert len(await store.load_listing(USER, "INBOX")) == 0
    assert list((await store.load_listing(USER, "Archive")).ids) == [archived]


@pytest_twisted.ensureDeferred
async def test_a_subscriber_learns_of_mail_added_and_removed_by_others(store):
    seen: list[FolderStatus] = []
    await store.create_folder(USER, "INBOX")
    sub = store.subscribe(USER, "INBOX", seen.append)
    await until(lambda: store.watcher._last.get((USER, "INBOX")) is not None)
    await deliver(store, b"Subject: new\r\n\r\nx\r\n")        # another writer
    await until(lambda: seen and seen[-1].messages == 1)
    assert seen[-1].uid_next == 2
    (mid,) = (await store.load_listing(USER, "INBOX")).ids
    owner = store.new_owner()
    assert await store.lock(USER, owner)
    await store.finish(USER, owner, [mid])                   # a POP3 session's QUIT
    await until(lambda: seen[-1].messages == 0)
    sub.cancel()
    sub.cancel()
    count = len(seen)
    await deliver(store, b"Subject: unheard\r\n\r\nx\r\n")
    await task.deferLater(reactor, 0.3, lambda: None)
    assert len(seen) == count and store.watcher._loop is None


def test_the_store_watches_a_bounded_number_of_folders(store):
    store.watcher.max_watched = 2
    def ignore(_status):
        pass
    subs = [store.subscribe(USER, "INBOX", ignore), store.subscribe(USER, "INBOX", ignore),
            store.subscribe(USER, "Archive", ignore)]
    with pytest.raises(OverflowError):
        store.subscribe(USER, "Sent", ignore)
    subs[2].cancel()
    subs.append(store.subscribe(USER, "Sent", ignore))
    for sub in subs:
        sub.cancel()


@pytest_twisted.ensureDeferred
async def test_a_delivery_in_this_process_is_told_at_once(store):
    from mailet_mta.folder_watch import changed_here

    watcher = store.watcher
    watcher.interval, watcher.feed = 3600.0, None       # neither poll nor feed would tell
    seen: list[FolderStatus] = []
    await store.create_folder(USER, "INBOX")
    sub = store.subscribe(USER, "INBOX", seen.append)
    await until(lambda: watcher._last.get((USER, "INBOX")) is not None)
    await deliver(store, b"Subject: new\r\n\r\nx\r\n")
    reads = watcher.reads
    changed_here("someone-else@example.com")            # not a watched user: no read
    assert watcher.reads == reads
    changed_here(USER)
    await until(lambda: seen and seen[-1].messages == 1, seconds=2.0)
    sub.cancel()
    changed_here(USER)                                   # nothing watched: nothing read
    assert watcher.reads == reads + 1
