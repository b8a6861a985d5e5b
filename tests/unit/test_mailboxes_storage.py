"""Mailboxes, messages, quotas, mailbox leases and repositories on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mailet_mta.address import MailAddress
from mailet_mta.mail import Mail
from mailet_mta.storage import domains, mailbox_locks, mailboxes, repositories, schema, users
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database, fetch_chunks
from mailet_mta.storage.mailbox_locks import acquire_lock, refresh_lock, release_lock


@pytest.fixture
def db(migrated_db_url):
    database = Database(migrated_db_url)
    with database.transaction() as conn:
        domains.add_domain(conn, "example.com")
        users.add_user(conn, "bob@example.com", "h")
        users.add_user(conn, "amy@example.com", "h", quota=200)
    yield database
    database.engine.dispose()


@pytest.fixture
def blobs(tmp_path):
    return BlobStore(tmp_path / "blobs", inline_limit=100)


def _deliver(db, blobs, user, body: bytes, prefix=b"Delivered-To: x@example.com\r\n"):
    ref = blobs.from_bytes(body)
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
        return mailboxes.store_message(conn, user, "INBOX", ref.id, prefix, ref.size)


def test_uids_are_allocated_in_order_and_sizes_include_the_prefix(db, blobs):
    assert _deliver(db, blobs, "bob@example.com", b"Subject: 1\r\n\r\none\r\n") == 1
    assert _deliver(db, blobs, "bob@example.com", b"Subject: 2\r\n\r\ntwo\r\n") == 2
    with db.transaction() as conn:
        listed = mailboxes.list_messages(conn, "bob@example.com")
    assert [m.uid for m in listed] == [1, 2]
    prefix_len = len(b"Delivered-To: x@example.com\r\n")
    assert listed[0].size == prefix_len + len(b"Subject: 1\r\n\r\none\r\n")
    assert len({m.uidl for m in listed}) == 2


def test_message_rows_follow_uid_order_whatever_the_row_ids(db, blobs):
    ref = blobs.from_bytes(b"Subject: x\r\n\r\nx\r\n")
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
        box = mailboxes.get_or_create_mailbox(conn, "bob@example.com")
        other = mailboxes.get_or_create_mailbox(conn, "amy@example.com")
        for mailbox, uid, deleted in ((box, 3, False), (box, 1, False), (other, 2, False),
                                      (box, 2, True), (box, 7, False)):
            conn.execute(schema.messages.insert().values(
                mailbox_id=mailbox, uid=uid, uidl=f"u-{mailbox}-{uid}", blob_id=ref.id,
                prefix=b"", size=10 * uid, internal_date=0.0, flags="", deleted=deleted))
    with db.transaction() as conn:
        rows = [row for chunk in mailboxes.message_row_chunks(conn, "bob@example.com")
                for row in chunk]
        assert not list(mailboxes.message_row_chunks(conn, "bob@example.com", "Archive"))
    assert [(uid, uidl, size) for _id, uid, uidl, size in rows] == [
        (1, f"u-{box}-1", 10), (3, f"u-{box}-3", 30), (7, f"u-{box}-7", 70)]
    assert all(type(row) is tuple and type(row[0]) is int for row in rows)
    with db.transaction() as conn:
        chunks = list(fetch_chunks(conn, mailboxes._LIST_MESSAGES,
                                   {"b_user": "bob@example.com", "b_folder": "INBOX"}, size=2))
    assert [len(chunk) for chunk in chunks] == [2, 1]
    assert [row for chunk in chunks for row in chunk] == rows


def test_two_messages_share_one_blob(db, blobs):
    ref = blobs.from_bytes(b"Subject: shared\r\n\r\nbody\r\n")
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
        mailboxes.store_message(conn, "bob@example.com", "INBOX", ref.id, b"", ref.size)
        mailboxes.store_message(conn, "amy@example.com", "INBOX", ref.id, b"", ref.size)
    with db.transaction() as conn:
        a = mailboxes.list_messages(conn, "bob@example.com")[0]
        b = mailboxes.list_messages(conn, "amy@example.com")[0]
        ca = mailboxes.message_content(conn, blobs, a.id)
        cb = mailboxes.message_content(conn, blobs, b.id)
    assert ca.source.blob_id == cb.source.blob_id == ref.id


def test_content_of_a_file_blob_is_prefix_plus_file(db, blobs):
    body = b"Subject: big\r\n\r\n" + b"x" * 500 + b"\r\n"
    _deliver(db, blobs, "bob@example.com", body, prefix=b"Return-Path: <>\r\n")
    with db.transaction() as conn:
        info = mailboxes.list_messages(conn, "bob@example.com")[0]
        content = mailboxes.message_content(conn, blobs, info.id)
    assert not content.source.in_memory
    with content.source.open() as f:
        assert content.prefix + f.read() == b"Return-Path: <>\r\n" + body
    assert content.size == info.size


def test_quota_exceeded_is_refused_and_stores_nothing(db, blobs):
    _deliver(db, blobs, "amy@example.com", b"x" * 100, prefix=b"")
    with pytest.raises(mailboxes.QuotaExceeded) as err:
        _deliver(db, blobs, "amy@example.com", b"y" * 101, prefix=b"")
    assert str(err.value).startswith("552 5.2.2 <amy@example.com>")
    with db.transaction() as conn:
        assert mailboxes.quota_usage(conn, "amy@example.com") == 100
        assert len(mailboxes.list_messages(conn, "amy@example.com")) == 1


def test_a_caller_that_goes_on_after_quota_exceeded_keeps_the_folder_count(db, blobs):
    with db.transaction() as conn:
        for body in (b"x" * 100, b"y" * 101, b"z" * 50):
            ref = blobs.from_bytes(body)
            BlobStore.insert_row(conn, ref)
            try:
                mailboxes.store_message(conn, "amy@example.com", "INBOX", ref.id, b"",
                                        ref.size)
            except mailboxes.QuotaExceeded:
                pass
    with db.transaction() as conn:
        listed = mailboxes.list_messages(conn, "amy@example.com")
        state = mailboxes.mailbox_state(conn, "amy@example.com")
    assert [m.size for m in listed] == [100, 50]
    assert listed[0].uid < listed[1].uid
    assert state is not None and state[3] == 2          # message_count


def test_concurrent_deliveries_to_a_user_with_a_quota_never_pass_it(db, blobs):
    """The second delivery waits for the first's folder lock, then counts its message."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises every writer with one database lock")
    import threading

    refs = [blobs.from_bytes(b"a" * 150), blobs.from_bytes(b"b" * 150)]
    outcome = []

    def second():
        with db.transaction() as conn:
            BlobStore.insert_row(conn, refs[1])
            try:
                mailboxes.store_message(conn, "amy@example.com", "INBOX", refs[1].id, b"",
                                        refs[1].size)
                outcome.append("stored")
            except mailboxes.QuotaExceeded:
                outcome.append("refused")
                raise

    with db.transaction() as conn:
        BlobStore.insert_row(conn, refs[0])
        mailboxes.store_message(conn, "amy@example.com", "INBOX", refs[0].id, b"",
                                refs[0].size)
        thread = threading.Thread(target=lambda: pytest.raises(mailboxes.QuotaExceeded,
                                                               second))
        thread.start()
        thread.join(0.5)            # blocked on the folder's row lock until this commits
        assert thread.is_alive() and outcome == []
    thread.join(10)
    assert outcome == ["refused"]
    with db.transaction() as conn:
        assert mailboxes.quota_usage(conn, "amy@example.com") == 150


def test_delete_messages_removes_only_the_given_rows(db, blobs):
    for i in range(3):
        _deliver(db, blobs, "bob@example.com", b"m%d\r\n" % i)
    with db.transaction() as conn:
        ids = [m.id for m in mailboxes.list_messages(conn, "bob@example.com")]
        assert mailboxes.delete_messages(conn, ids[:2]) == 2
        assert [m.id for m in mailboxes.list_messages(conn, "bob@example.com")] == ids[2:]


def test_mailbox_summary_counts_messages_and_octets(db, blobs):
    _deliver(db, blobs, "bob@example.com", b"abc\r\n", prefix=b"")
    with db.transaction() as conn:
        assert mailboxes.mailbox_summary(conn, "bob@example.com") == [("INBOX", 1, 5)]
        assert mailboxes.list_messages(conn, "nobody@example.com") == []


def test_removing_a_user_removes_their_messages(db, blobs):
    _deliver(db, blobs, "bob@example.com", b"abc\r\n")
    with db.transaction() as conn:
        users.remove_user(conn, "bob@example.com")
        assert mailboxes.list_messages(conn, "bob@example.com") == []


@pytest.mark.parametrize("statement", ["upsert", "update-then-insert"])
def test_mailbox_lease_is_exclusive_until_it_expires(db, statement, monkeypatch):
    if statement != "upsert":
        monkeypatch.setattr(mailbox_locks, "_TAKE_LEASE", {})
    with db.transaction() as conn:
        assert acquire_lock(conn, "bob@example.com", "node-a", 60, now=1000)
        assert not acquire_lock(conn, "bob@example.com", "node-b", 60, now=1010)
        assert refresh_lock(conn, "bob@example.com", "node-a", 60, now=1050)
        assert not acquire_lock(conn, "bob@example.com", "node-b", 60, now=1100)
        assert acquire_lock(conn, "bob@example.com", "node-b", 60, now=1111)   # expired
        assert not refresh_lock(conn, "bob@example.com", "node-a", 60, now=1112)
        release_lock(conn, "bob@example.com", "node-a")        # not ours any more: no-op
        assert not acquire_lock(conn, "bob@example.com", "node-c", 60, now=1113)
        release_lock(conn, "bob@example.com", "node-b")
        assert acquire_lock(conn, "bob@example.com", "node-c", 60, now=1114)


def _mail(name="m1"):
    return Mail(name, sender=MailAddress.parse("a@remote.example"),
                recipients=[MailAddress.parse("bob@example.com")], state="error",
                attributes={"k": [1, 2]}, error_message="550 nope",
                remote_addr="192.0.2.1", remote_host="client.example")


def test_repository_store_list_get_remove(db, blobs):
    ref = blobs.from_bytes(b"Subject: x\r\n\r\nbody\r\n")
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
        mid = repositories.store(conn, "error", _mail(), ref.id)
        repositories.store(conn, "relay-denied", _mail("m2"), ref.id)
    with db.transaction() as conn:
        assert repositories.names(conn) == [("error", 1), ("relay-denied", 1)]
        stored = repositories.get(conn, mid)
        assert stored.sender == "a@remote.example"
        assert stored.recipients == ["bob@example.com"]
        assert stored.attributes == {"k": [1, 2]}
        assert stored.error_message == "550 nope"
        assert [m.name for m in repositories.list_mails(conn, "error")] == ["m1"]
        assert repositories.remove(conn, mid)
        assert not repositories.remove(conn, mid)
        assert repositories.get(conn, mid) is None


def test_reprocess_puts_mails_back_into_the_spool_unowned(db, blobs):
    from sqlalchemy import select

    from mailet_mta.storage import schema

    ref = blobs.from_bytes(b"Subject: x\r\n\r\nbody\r\n")
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
        repositories.store(conn, "error", _mail("m1"), ref.id)
        repositories.store(conn, "error", _mail("m2"), ref.id)
    with db.transaction() as conn:
        assert repositories.reprocess(conn, "error", state="transport") == [
            ("m1", "transport"), ("m2", "transport")]
    with db.transaction() as conn:
        rows = conn.execute(select(schema.spool).order_by(schema.spool.c.name)).all()
        assert repositories.names(conn) == []
    assert [(r.name, r.state, r.owner, r.tries, r.blob_id) for r in rows] == [
        ("m1", "transport", None, 0, ref.id), ("m2", "transport", None, 0, ref.id)]


def _load(db, cache, user="bob@example.com"):
    from mailet_mta.retrieval import load_listing
    with db.engine.connect() as conn:
        return load_listing(conn, user, "INBOX", cache)


def _uidls(drop):
    return b"".join(drop.uidl_lines)


def test_an_unchanged_mailbox_reuses_its_listing_and_every_change_reloads_it(db, blobs):
    from mailet_mta.retrieval import ListingCache
    cache = ListingCache()
    for n in range(3):
        _deliver(db, blobs, "bob@example.com", b"Subject: %d\r\n\r\nbody\r\n" % n)
    first = _load(db, cache)
    assert len(first) == 3 and cache.misses == 1
    assert _load(db, cache) is first and cache.hits == 1          # nothing changed

    _deliver(db, blobs, "bob@example.com", b"Subject: new\r\n\r\nbody\r\n")
    grown = _load(db, cache)
    assert grown is not first and len(grown) == 4                   # a delivery
    assert _uidls(grown).startswith(_uidls(first))

    with db.transaction() as conn:
        mailboxes.delete_messages(conn, [grown.ids[0]])
    shrunk = _load(db, cache)
    assert len(shrunk) == 3 and grown.ids[0] not in shrunk.ids     # a removal

    # A delivery and a removal together keep the count but not uid_next.
    _deliver(db, blobs, "bob@example.com", b"Subject: newer\r\n\r\nbody\r\n")
    with db.transaction() as conn:
        mailboxes.delete_messages(conn, [shrunk.ids[0]])
    swapped = _load(db, cache)
    assert len(swapped) == 3 and shrunk.ids[0] not in swapped.ids
    with db.engine.connect() as conn:
        fresh = mailboxes.list_messages(conn, "bob@example.com")
    assert list(swapped.ids) == [m.id for m in fresh]


def test_a_recreated_user_never_sees_the_old_listing(db, blobs):
    from mailet_mta.retrieval import ListingCache
    cache = ListingCache()
    _deliver(db, blobs, "bob@example.com", b"Subject: old\r\n\r\nbody\r\n")
    assert len(_load(db, cache)) == 1
    with db.transaction() as conn:
        users.remove_user(conn, "bob@example.com")
        users.add_user(conn, "bob@example.com", "h")
    assert len(_load(db, cache)) == 0


def test_the_listing_cache_keeps_a_bounded_number_of_messages(db, blobs):
    from mailet_mta.retrieval import ListingCache
    cache = ListingCache(max_messages=3)
    for n in range(2):
        _deliver(db, blobs, "bob@example.com", b"Subject: b%d\r\n\r\nx\r\n" % n)
        _deliver(db, blobs, "amy@example.com", b"Subject: a%d\r\n\r\nx\r\n" % n)
    bob = _load(db, cache)
    amy = _load(db, cache, "amy@example.com")      # 2 + 2 > 3: bob's listing goes
    assert _load(db, cache, "amy@example.com") is amy
    assert _load(db, cache) is not bob
