"""The IMAP side of the mail store on SQLite and PostgreSQL: snapshots (SELECT),
modseqs and changes (CONDSTORE/QRESYNC), flag stores with UNCHANGEDSINCE, expunges
with tombstones, and POP3 and IMAP on the same messages."""

from __future__ import annotations

import pytest
import pytest_twisted

from mailet_mta.mailstore import (
    FolderChanges,
    FolderExists,
    FolderSnapshot,
    MessageTooLarge,
    NoSuchFolder,
    OverQuota,
    StoreResult,
)
from mailet_mta.retrieval import DatabaseMailStore
from mailet_mta.storage.authenticator import Authenticator
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database
from tests.integration.pop3_server_fixture import USER, prepare_database
from tests.integration.test_retrieval_store import deliver, store  # noqa: F401 - fixture


async def _fill(store, n: int, folder: str = "INBOX") -> list[int]:  # noqa: F811
    return [await deliver(store, b"Subject: %d\r\n\r\nbody\r\n" % i, folder) for i in range(n)]


@pytest_twisted.ensureDeferred
async def test_select_gives_parallel_arrays_in_uid_order(store):  # noqa: F811
    with pytest.raises(NoSuchFolder):
        await store.select(USER, "INBOX")
    await _fill(store, 3)
    snap = await store.select(USER, "inbox")                  # INBOX in any case
    assert isinstance(snap, FolderSnapshot)
    assert list(snap.uids) == [1, 2, 3] and len(snap) == 3
    assert snap.status.name == "INBOX" and snap.status.messages == 3
    assert snap.status.uid_next == 4
    assert list(snap.sizes) == [len(b"Subject: %d\r\n\r\nbody\r\n" % i) for i in range(3)]
    assert all(d > 1.7e9 for d in snap.dates)
    assert snap.flags == [frozenset()] * 3 and snap.flags[0] is snap.flags[2]
    # every delivery raised the folder's modseq and stamped its message
    assert list(snap.modseqs) == sorted(set(snap.modseqs))
    assert snap.status.highest_modseq == snap.modseqs[-1]


@pytest_twisted.ensureDeferred
async def test_select_of_an_unchanged_folder_is_the_cached_snapshot(store):  # noqa: F811
    await _fill(store, 2)
    first = await store.select(USER, "INBOX")
    assert await store.select(USER, "INBOX") is first
    await deliver(store, b"Subject: new\r\n\r\nx\r\n")
    third = await store.select(USER, "INBOX")
    assert third is not first and list(third.uids) == [1, 2, 3]
    assert list(first.uids) == [1, 2]                       # snapshots never change


@pytest_twisted.ensureDeferred
async def test_a_changed_folder_is_brought_up_to_date_from_the_cache(store):  # noqa: F811
    await _fill(store, 5)
    before = await store.select(USER, "INBOX")
    ids = list(before.ids)
    await store.store_flags(ids[1:3], {"\\Seen"}, "add")
    await store.expunge_messages(USER, "INBOX", [ids[0], ids[3]])
    await deliver(store, b"Subject: six\r\n\r\nx\r\n")
    after = await store.select(USER, "INBOX")
    store.snapshots.clear()
    fresh = await store.select(USER, "INBOX")
    for name in ("ids", "uids", "sizes", "dates", "modseqs", "flags"):
        assert list(getattr(after, name)) == list(getattr(fresh, name)), name
    assert after.status == fresh.status
    assert list(after.uids) == [2, 3, 5, 6]
    assert after.flags[:2] == [{"\\Seen"}, {"\\Seen"}]


@pytest_twisted.ensureDeferred
async def test_changes_report_new_mail_flag_changes_and_expunges_since_a_modseq(store):  # noqa: F811
    await _fill(store, 3)
    snap = await store.select(USER, "INBOX")
    since = snap.status.highest_modseq
    nothing = await store.changes(USER, "INBOX", since)
    assert isinstance(nothing, FolderChanges)
    assert (nothing.updated, nothing.expunged_uids) == ([], [])
    assert nothing.status.highest_modseq == since and nothing.status.messages == 3
    ids = list(snap.ids)
    await store.store_flags([ids[2]], {"\\Flagged"}, "add")
    await store.expunge_messages(USER, "INBOX", [ids[0]])
    await deliver(store, b"Subject: four\r\n\r\nx\r\n")
    changes = await store.changes(USER, "INBOX", since)
    assert [(uid, flags) for _id, uid, _s, _d, _m, flags in changes.updated] == [
        (3, {"\\Flagged"}), (4, frozenset())]
    assert changes.expunged_uids == [1]
    assert changes.status.messages == 3 and changes.status.uid_next == 5
    assert changes.status.highest_modseq == since + 3
    assert all(row[4] > since for row in changes.updated)
    with pytest.raises(NoSuchFolder):
        await store.changes(USER, "Nope", 0)


@pytest_twisted.ensureDeferred
async def test_store_flags_gives_changed_messages_a_new_modseq_and_honours_unchangedsince(store):  # noqa: F811
    await _fill(store, 3)
    snap = await store.select(USER, "INBOX")
    a, b, c = snap.ids
    base = snap.status.highest_modseq
    result = await store.store_flags([a, b], {"\\Seen"}, "add")
    assert isinstance(result, StoreResult) and result.failed == set()
    assert result.updated == {a: ({"\\Seen"}, base + 1), b: ({"\\Seen"}, base + 1)}
    # nothing changes: no new modseq, the old one is reported
    again = await store.store_flags([a], {"\\Seen"}, "add")
    assert again.updated == {a: ({"\\Seen"}, base + 1)}
    assert (await store.folder_status(USER, "INBOX")).highest_modseq == base + 1
    # RFC 7162 §3.1.3: b changed after `base`, so UNCHANGEDSINCE base fails for it
    cond = await store.store_flags([b, c, 999999], {"$Important"}, "add",
                                   unchanged_since=base)
    assert cond.failed == {b}
    assert cond.updated == {c: ({"$Important"}, base + 2)}
    replaced = await store.store_flags([a, b], {"\\Draft"}, "replace")
    assert {mid: f for mid, (f, _m) in replaced.updated.items()} == {
        a: {"\\Draft"}, b: {"\\Draft"}}
    removed = await store.store_flags([a], {"\\Draft"}, "remove")
    assert removed.updated[a][0] == frozenset()
    for bad in ({"two words"}, {"\\Bogus"}):
        with pytest.raises(ValueError):
            store.store_flags([a], bad, "add")


@pytest_twisted.ensureDeferred
async def test_expunge_messages_returns_the_removed_ids_of_that_folder_only(store):  # noqa: F811
    await _fill(store, 2)
    await _fill(store, 1, "Archive")
    inbox = await store.select(USER, "INBOX")
    archive = await store.select(USER, "Archive")
    removed = await store.expunge_messages(USER, "INBOX", [inbox.ids[1], archive.ids[0]])
    assert removed == [inbox.ids[1]]
    assert await store.expunge_messages(USER, "INBOX", [inbox.ids[1]]) == []
    assert await store.expunge_messages(USER, "Nope", [inbox.ids[0]]) == []
    changes = await store.changes(USER, "INBOX", inbox.status.highest_modseq)
    assert changes.expunged_uids == [2] and changes.updated == []


@pytest_twisted.ensureDeferred
async def test_tombstones_are_bounded_and_older_states_get_unknown(store):  # noqa: F811
    store.tombstone_limit = 3
    await _fill(store, 6)
    snap = await store.select(USER, "INBOX")
    start = snap.status.highest_modseq
    for mid in snap.ids[:5]:                            # five expunges, one at a time
        await store.expunge_messages(USER, "INBOX", [mid])
    recent = await store.changes(USER, "INBOX", start + 2)
    assert recent.expunged_uids == [3, 4, 5]
    lost = await store.changes(USER, "INBOX", start)
    assert lost.expunged_uids is None                   # uid 1 and 2's tombstones are gone
    # the cached snapshot cannot be brought up to date: a full read answers instead
    fresh = await store.select(USER, "INBOX")
    assert list(fresh.uids) == [6]


@pytest_twisted.ensureDeferred
async def test_pop3_dele_quit_is_an_expunge_imap_sessions_see(store):  # noqa: F811
    await _fill(store, 3)
    snap = await store.select(USER, "INBOX")
    owner = store.new_owner()
    assert await store.lock(USER, owner)
    listing = await store.load_listing(USER, "INBOX")
    assert await store.finish(USER, owner, [listing.ids[1]]) == 1
    changes = await store.changes(USER, "INBOX", snap.status.highest_modseq)
    assert changes.expunged_uids == [2]
    assert changes.status.highest_modseq == snap.status.highest_modseq + 1


@pytest_twisted.ensureDeferred
async def test_pop3_retr_of_a_message_imap_expunged_is_none_and_numbering_holds(store):  # noqa: F811
    await _fill(store, 3)
    owner = store.new_owner()
    assert await store.lock(USER, owner)
    listing = await store.load_listing(USER, "INBOX")         # the POP3 session's view
    snap = await store.select(USER, "INBOX")
    await store.expunge_messages(USER, "INBOX", [snap.ids[0]])  # an IMAP EXPUNGE
    assert await store.open_message(listing.ids[0]) is None      # RETR 1: -ERR
    assert (await store.open_message(listing.ids[1])) is not None  # RETR 2 still 2
    assert list(listing.uids) == [1, 2, 3]
    # QUIT with DELE 1 and 3: 1 is already gone, 3 goes
    assert await store.finish(USER, owner, [listing.ids[0], listing.ids[2]]) == 1
    assert list((await store.select(USER, "INBOX")).uids) == [2]


@pytest.fixture
def two_stores(migrated_db_url, tmp_path):
    """Two stores (two processes' worth) on one database."""
    prepare_database(migrated_db_url)
    out = []
    for name in ("node-a", "node-b"):
        db = Database(migrated_db_url)
        db.start()
        blobs = BlobStore(tmp_path / "blobs", inline_limit=4096)
        out.append(DatabaseMailStore(db, blobs, Authenticator(db, failure_delay=0), name))
    yield out
    for s in out:
        pytest_twisted.blockon(s.db.stop())


@pytest_twisted.ensureDeferred
async def test_another_process_sees_flag_changes_in_its_cached_snapshot(two_stores):
    a, b = two_stores
    await _fill(a, 2)
    seen_by_b = await b.select(USER, "INBOX")
    await a.store_flags([seen_by_b.ids[0]], {"\\Answered"}, "add")
    now = await b.select(USER, "INBOX")
    assert now.flags[0] == {"\\Answered"}
    assert now.status.highest_modseq == seen_by_b.status.highest_modseq + 1


# -- folders and subscriptions ---------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_create_folder_makes_superiors_and_exclusive_refuses_an_existing_one(store):  # noqa: F811
    status = await store.create_folder(USER, "Work/2026/Q4")
    assert status.name == "Work/2026/Q4" and status.highest_modseq >= 1
    names = [f.name for f in await store.list_folders(USER)]
    assert names == ["Work", "Work/2026", "Work/2026/Q4"]
    with pytest.raises(FolderExists):
        await store.create_folder(USER, "Work", exclusive=True)
    assert (await store.create_folder(USER, "Work")).name == "Work"
    with pytest.raises(FolderExists):
        await store.create_folder(USER, "inbox", exclusive=(await store.create_folder(
            USER, "INBOX")).name == "INBOX")
    for bad in ("", "a//b", "/a", "a/", "tab\there", "star*", "x" * 256):
        with pytest.raises(ValueError):
            store.create_folder(USER, bad)


@pytest_twisted.ensureDeferred
async def test_delete_folder_removes_its_messages_but_not_its_inferiors(store):  # noqa: F811
    await store.create_folder(USER, "Lists/python")
    await _fill(store, 2, "Lists")
    await store.delete_folder(USER, "Lists")
    assert [f.name for f in await store.list_folders(USER)] == ["Lists/python"]
    with pytest.raises(NoSuchFolder):
        await store.select(USER, "Lists")
    with pytest.raises(NoSuchFolder):
        await store.delete_folder(USER, "Lists")
    with pytest.raises(ValueError):
        await store.delete_folder(USER, "inbox")


@pytest_twisted.ensureDeferred
async def test_a_folder_created_again_gets_a_new_uid_validity(store):  # noqa: F811
    seen = set()
    for _ in range(3):                         # within one second: still all different
        status = await store.create_folder(USER, "Again")
        assert status.uid_validity not in seen
        seen.add(status.uid_validity)
        await _fill(store, 1, "Again")
        await store.delete_folder(USER, "Again")
    fresh = await store.create_folder(USER, "Again")
    assert fresh.uid_next == 1 and fresh.messages == 0


@pytest_twisted.ensureDeferred
async def test_uid_validity_and_uids_survive_a_restart(db_url, tmp_path):
    prepare_database(db_url)

    async def session(name):
        db = Database(db_url)
        db.start()
        s = DatabaseMailStore(db, BlobStore(tmp_path / "blobs"),
                              Authenticator(db, failure_delay=0), name)
        try:
            await _fill(s, 2)
            snap = await s.select(USER, "INBOX")
            await s.expunge_messages(USER, "INBOX", [snap.ids[-1]])
            return snap.status.uid_validity, list(snap.uids)
        finally:
            await db.stop()
    first = await session("before")
    second = await session("after")
    assert first == (first[0], [1, 2])
    assert second == (first[0], [1, 3, 4])        # uid 2 expunged, never reused


@pytest_twisted.ensureDeferred
async def test_rename_moves_inferiors_and_subscriptions_and_keeps_uids(store):  # noqa: F811
    await store.create_folder(USER, "Old/child")
    await _fill(store, 2, "Old")
    before = await store.select(USER, "Old")
    await store.set_subscribed(USER, "Old/child", True)
    await store.rename_folder(USER, "Old", "New/Name")
    names = [f.name for f in await store.list_folders(USER)]
    assert names == ["New", "New/Name", "New/Name/child"]
    after = await store.select(USER, "New/Name")
    assert list(after.uids) == [1, 2]
    assert after.status.uid_validity == before.status.uid_validity
    assert await store.subscriptions(USER) == {"New/Name/child"}
    with pytest.raises(NoSuchFolder):
        await store.rename_folder(USER, "Old", "Other")
    await store.create_folder(USER, "Taken")
    with pytest.raises(FolderExists):
        await store.rename_folder(USER, "New/Name", "Taken")
    with pytest.raises(FolderExists):
        await store.rename_folder(USER, "New", "New/Name/child/x")
    with pytest.raises(ValueError):
        await store.rename_folder(USER, "Taken", "inbox")


@pytest_twisted.ensureDeferred
async def test_renaming_inbox_moves_its_messages_and_leaves_a_new_empty_inbox(store):  # noqa: F811
    await _fill(store, 2)
    await store.create_folder(USER, "INBOX/kept")
    old = await store.select(USER, "INBOX")
    await store.rename_folder(USER, "INBOX", "Saved")
    saved = await store.select(USER, "Saved")
    assert list(saved.ids) == list(old.ids) and list(saved.uids) == [1, 2]
    inbox = await store.select(USER, "INBOX")
    assert len(inbox) == 0 and inbox.status.uid_validity != old.status.uid_validity
    assert inbox.status.uid_next == 1
    assert "INBOX/kept" in [f.name for f in await store.list_folders(USER)]


@pytest_twisted.ensureDeferred
async def test_ensure_user_folders_creates_special_use_folders_once(store):  # noqa: F811
    await store.ensure_user_folders(USER)
    folders = {f.name: f for f in await store.list_folders(USER)}
    assert set(folders) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert folders["Sent"].special_use == "\\Sent" and folders["INBOX"].special_use is None
    assert folders["Junk"].special_use == "\\Junk"
    assert await store.subscriptions(USER) == set(folders)
    await store.set_subscribed(USER, "Trash", False)
    await store.delete_folder(USER, "Drafts")
    validity = folders["Sent"].uid_validity
    await store.ensure_user_folders(USER)
    again = {f.name: f for f in await store.list_folders(USER)}
    assert set(again) == set(folders) and again["Sent"].uid_validity == validity
    assert await store.subscriptions(USER) == set(folders) - {"Trash"}


@pytest_twisted.ensureDeferred
async def test_subscriptions_need_no_folder_and_are_bounded(store, monkeypatch):  # noqa: F811
    from mailet_mta.storage import folders

    await store.set_subscribed(USER, "Not/There", True)
    await store.set_subscribed(USER, "Not/There", True)
    assert await store.subscriptions(USER) == {"Not/There"}
    monkeypatch.setattr(folders, "MAX_SUBSCRIPTIONS", 2)
    await store.set_subscribed(USER, "b", True)
    with pytest.raises(ValueError):
        await store.set_subscribed(USER, "c", True)
    await store.set_subscribed(USER, "b", False)
    assert await store.subscriptions(USER) == {"Not/There"}


@pytest_twisted.ensureDeferred
async def test_folders_per_user_are_bounded(store, monkeypatch):  # noqa: F811
    from mailet_mta.storage import folders

    monkeypatch.setattr(folders, "MAX_FOLDERS", 3)
    await store.create_folder(USER, "a/b")
    with pytest.raises(ValueError):
        await store.create_folder(USER, "c/d")
    await store.create_folder(USER, "c")


@pytest_twisted.ensureDeferred
async def test_quota_and_read_headers(store):  # noqa: F811
    body = b"Subject: hi\r\nFrom: a@example.com\r\n\r\n" + b"body line\r\n" * 5000
    await deliver(store, body, prefix=b"Return-Path: <a@example.com>\r\n")
    prefix_size = len(b"Return-Path: <a@example.com>\r\n")
    assert await store.quota(USER) == (len(body) + prefix_size, None)
    (mid,) = (await store.select(USER, "INBOX")).ids
    headers = await store.read_headers(mid, 10_000)
    assert headers == b"Return-Path: <a@example.com>\r\nSubject: hi\r\nFrom: a@example.com\r\n\r\n"
    assert await store.read_headers(mid, 10) == headers[:10]
    await deliver(store, b"\r\nno header at all\r\n\r\nx\r\n")
    bare = (await store.select(USER, "INBOX")).ids[1]
    assert await store.read_headers(bare, 100) == b"\r\n"
    await store.expunge_messages(USER, "INBOX", [mid])
    assert await store.read_headers(mid, 100) is None


@pytest_twisted.ensureDeferred
async def test_a_listener_hears_flag_changes_and_the_folder_going(store):  # noqa: F811
    from tests.integration.test_retrieval_store import until

    await _fill(store, 1, "Watched")
    heard: list = []
    sub = store.subscribe(USER, "Watched", heard.append)
    await until(lambda: store.watcher._last.get((USER, "Watched")) is not None)
    (mid,) = (await store.select(USER, "Watched")).ids
    await store.store_flags([mid], {"\\Seen"}, "add")
    await until(lambda: heard and heard[-1] is not None)
    modseq = heard[-1].highest_modseq
    await store.rename_folder(USER, "Watched", "Elsewhere")
    await until(lambda: heard[-1] is None)
    assert modseq > 1
    sub.cancel()


# -- append, copy, move ------------------------------------------------------------------
async def _append(store, folder: str, body: bytes, flags=(), date=None,  # noqa: F811
                  piece: int = 1000):
    append = store.begin_append(USER, folder)
    for start in range(0, len(body), piece):
        append.write(body[start:start + piece])
    return await append.finish(flags, date)


@pytest_twisted.ensureDeferred
async def test_append_keeps_flags_date_and_bytes(store):  # noqa: F811
    status = await store.create_folder(USER, "Sent")
    large = b"Subject: big\r\n\r\n" + b"line of text\r\n" * 3000
    assert len(large) > store.blobs.inline_limit                  # a file blob
    assert await _append(store, "Sent", large, {"\\Seen", "$Sent"}, 1_000_000_000.0) == (
        status.uid_validity, 1)
    assert await _append(store, "Sent", b"Subject: s\r\n\r\nhi\r\n") == (
        status.uid_validity, 2)
    snap = await store.select(USER, "Sent")
    assert snap.flags[0] == {"\\Seen", "$Sent"} and snap.dates[0] == 1_000_000_000.0
    assert snap.sizes[0] == len(large)
    content = await store.open_message(snap.ids[0])
    assert b"".join(content.chunks(8192)) == large
    assert not list((store.blobs.root / "tmp").iterdir())


@pytest_twisted.ensureDeferred
async def test_append_to_a_missing_folder_fails_and_keeps_nothing(store):  # noqa: F811
    big = b"Subject: big\r\n\r\n" + b"line of text\r\n" * 3000
    with pytest.raises(NoSuchFolder):
        await _append(store, "Nowhere", big)
    files = [p for p in store.blobs.root.rglob("*") if p.is_file()]
    assert files == []
    with pytest.raises(ValueError):
        await _append(store, "INBOX", b"x\r\n", {"\\Recent"})


@pytest_twisted.ensureDeferred
async def test_append_is_bounded_by_the_maximum_message_size(store):  # noqa: F811
    await store.create_folder(USER, "INBOX")
    store.max_message_size = 10_000
    with pytest.raises(MessageTooLarge) as caught:
        await _append(store, "INBOX", b"Subject: x\r\n\r\n" + b"y" * 20_000)
    assert caught.value.limit == 10_000 and caught.value.size > 10_000
    assert not list((store.blobs.root / "tmp").iterdir())
    assert await _append(store, "INBOX", b"Subject: x\r\n\r\n" + b"y" * 9_000)
    aborted = store.begin_append(USER, "INBOX")
    aborted.write(b"Subject: gone\r\n\r\n" + b"z" * 6000)
    aborted.abort()
    assert not list((store.blobs.root / "tmp").iterdir())


@pytest_twisted.ensureDeferred
async def test_quota_applies_to_append_and_copy_but_not_move(store):  # noqa: F811
    from mailet_mta.storage import users

    with store.db.transaction() as conn:
        users.set_quota(conn, USER, 100)
    await store.create_folder(USER, "INBOX")
    await store.create_folder(USER, "Copies")
    await _append(store, "INBOX", b"Subject: 60\r\n\r\n" + b"x" * 44)      # 59 octets
    with pytest.raises(OverQuota) as caught:
        await _append(store, "INBOX", b"Subject: 60\r\n\r\n" + b"x" * 44)
    assert (caught.value.usage, caught.value.limit) == (59, 100)
    (mid,) = (await store.select(USER, "INBOX")).ids
    with pytest.raises(OverQuota):
        await store.copy_messages(USER, [mid], "Copies")
    assert len(await store.select(USER, "Copies")) == 0
    validity, moved = await store.move_messages(USER, "INBOX", [mid], "Copies")
    assert moved == [(mid, 1)]
    assert await store.quota(USER) == (59, 100)


@pytest_twisted.ensureDeferred
async def test_copy_shares_the_blob_and_deleting_one_copy_keeps_the_other(store):  # noqa: F811
    body = b"Subject: shared\r\n\r\n" + b"line of text\r\n" * 1000     # a file blob
    await deliver(store, body, prefix=b"Delivered-To: bob@example.com\r\n")
    await _fill(store, 1)
    await store.create_folder(USER, "Keep")
    inbox = await store.select(USER, "INBOX")
    await store.store_flags([inbox.ids[0]], {"\\Flagged"}, "add")
    validity, pairs = await store.copy_messages(USER, [inbox.ids[1], inbox.ids[0], 999999],
                                                "Keep")
    assert validity == (await store.folder_status(USER, "Keep")).uid_validity
    assert pairs == [(inbox.ids[1], 1), (inbox.ids[0], 2)]      # the order given
    keep = await store.select(USER, "Keep")
    assert keep.flags[1] == {"\\Flagged"} and keep.dates[1] == inbox.dates[0]
    files_before = [p for p in store.blobs.root.rglob("*") if p.is_file()]
    assert len(files_before) == 1                               # not duplicated
    await store.expunge_messages(USER, "INBOX", [inbox.ids[0]])
    assert await store.db.write(store.blobs.sweep, -1) == 0      # still referenced
    content = await store.open_message(keep.ids[1])
    assert b"".join(content.chunks(4096)) == b"Delivered-To: bob@example.com\r\n" + body
    await store.expunge_messages(USER, "Keep", [keep.ids[1]])
    assert await store.db.write(store.blobs.sweep, -1) == 1      # now nothing refers to it
    assert not [p for p in store.blobs.root.rglob("*") if p.is_file()]


@pytest_twisted.ensureDeferred
async def test_move_expunges_the_source_in_the_same_transaction(store):  # noqa: F811
    await _fill(store, 3)
    await store.create_folder(USER, "Trash")
    inbox = await store.select(USER, "INBOX")
    since = inbox.status.highest_modseq
    _validity, pairs = await store.move_messages(USER, "INBOX",
                                                 [inbox.ids[0], inbox.ids[2]], "Trash")
    assert [uid for _mid, uid in pairs] == [1, 2]
    changes = await store.changes(USER, "INBOX", since)
    assert changes.expunged_uids == [1, 3] and changes.status.messages == 1
    assert list((await store.select(USER, "Trash")).uids) == [1, 2]
    with pytest.raises(NoSuchFolder):
        await store.move_messages(USER, "INBOX", [inbox.ids[1]], "Missing")
    assert list((await store.select(USER, "INBOX")).ids) == [inbox.ids[1]]
    # ids of another folder are not moved from this one
    trash = await store.select(USER, "Trash")
    assert (await store.move_messages(USER, "INBOX", list(trash.ids), "Trash"))[1] == []


# -- notifications across processes -----------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_another_process_hears_new_mail_flags_and_expunges_within_a_second(two_stores):
    import time

    from tests.integration.test_retrieval_store import until

    watching, changing = two_stores
    assert watching.watcher.interval >= 5          # the feed, not the fallback poll
    await _fill(changing, 1)
    heard: list = []
    sub = watching.subscribe(USER, "inbox", heard.append)
    await until(lambda: watching.watcher._last.get((USER, "INBOX")) is not None)

    async def within_a_second(action, check):
        count = len(heard)
        started = time.monotonic()
        await action()
        await until(lambda: len(heard) > count and check(heard[-1]), seconds=5)
        return time.monotonic() - started

    lags = [
        await within_a_second(lambda: deliver(changing, b"Subject: n\r\n\r\nx\r\n"),
                              lambda s: s.messages == 2 and s.uid_next == 3),
    ]
    snap = await changing.select(USER, "INBOX")
    lags.append(await within_a_second(
        lambda: changing.store_flags([snap.ids[0]], {"\\Seen"}, "add"),
        lambda s: s.highest_modseq == snap.status.highest_modseq + 1))
    lags.append(await within_a_second(
        lambda: changing.expunge_messages(USER, "INBOX", [snap.ids[1]]),
        lambda s: s.messages == 1))
    print("notification lags", [round(lag, 3) for lag in lags])
    assert max(lags) < 1.0, lags
    sub.cancel()
    assert watching.watcher.feed._stop is None


@pytest_twisted.ensureDeferred
async def test_the_watcher_reads_all_watched_folders_in_one_read(store):  # noqa: F811
    from tests.integration.test_retrieval_store import until

    for name in ("A", "B", "C"):
        await _fill(store, 1, name)
    heard: list = []
    subs = [store.subscribe(USER, name, heard.append) for name in ("A", "B", "C")]
    await until(lambda: all(store.watcher._last.get((USER, n)) for n in "ABC"))
    reads = store.watcher.reads
    store.watcher.changed(None)
    store.watcher.changed(None)
    store.watcher.changed(None)
    await store.watcher.poll_now([(USER, "A")])
    assert store.watcher.reads - reads <= 2 and heard == []
    for sub in subs:
        sub.cancel()


@pytest_twisted.ensureDeferred
async def test_the_kept_message_count_follows_every_kind_of_change(store):  # noqa: F811
    from sqlalchemy import func, select

    from mailet_mta.storage import schema

    await _fill(store, 4)
    await store.create_folder(USER, "Other")
    snap = await store.select(USER, "INBOX")
    await store.copy_messages(USER, snap.ids[:3], "Other")
    await store.move_messages(USER, "INBOX", [snap.ids[3]], "Other")
    await store.expunge_messages(USER, "INBOX", [snap.ids[0]])
    owner = store.new_owner()
    assert await store.lock(USER, owner)
    await store.finish(USER, owner, [snap.ids[1]])
    await _append(store, "Other", b"Subject: a\r\n\r\nx\r\n")
    with store.db.engine.connect() as conn:
        real = dict(conn.execute(
            select(schema.mailboxes.c.name, func.count(schema.messages.c.id))
            .select_from(schema.mailboxes.outerjoin(
                schema.messages, schema.messages.c.mailbox_id == schema.mailboxes.c.id))
            .group_by(schema.mailboxes.c.name)).all())
    assert real == {"INBOX": 1, "Other": 5}
    for status in await store.list_folders(USER):
        assert status.messages == real[status.name]
        assert len(await store.select(USER, status.name)) == real[status.name]


@pytest_twisted.ensureDeferred
async def test_the_snapshot_cache_is_bounded_in_messages(store):  # noqa: F811
    from mailet_mta.folder_views import SnapshotCache

    store.snapshots = SnapshotCache(max_messages=3)
    await _fill(store, 2, "A")
    await _fill(store, 2, "B")
    await _fill(store, 4, "C")
    a = await store.select(USER, "A")
    assert await store.select(USER, "A") is a
    await store.select(USER, "B")                     # 4 messages > 3: A goes
    assert store.snapshots.entry((USER, "A")) is None
    c = await store.select(USER, "C")                 # larger than the bound: not kept
    assert await store.select(USER, "C") is not c and len(c) == 4
    assert store.snapshots.entry((USER, "B")) is not None


@pytest_twisted.ensureDeferred
async def test_read_messages_gives_prefix_and_blob_of_those_that_exist(store):  # noqa: F811
    small = b"Subject: small\r\n\r\nx\r\n"
    big = b"Subject: big\r\n\r\n" + b"y" * 10_000 + b"\r\n"      # a blob file
    a = await deliver(store, small, prefix=b"Return-Path: <a@example.org>\r\n")
    b = await deliver(store, big)
    ids = (await store.select(USER, "INBOX")).ids
    found = await store.read_messages([*ids, 999_999])
    assert found == {ids[0]: b"Return-Path: <a@example.org>\r\n" + small, ids[1]: big}
    assert (a, b) == (1, 2)
    assert await store.read_messages([ids[1]]) == {ids[1]: big}
    assert await store.read_messages([999_999]) == {}
