"""The durable spool: accept, run, commit effects atomically, retry, error repository."""

from __future__ import annotations

import json
import time

import pytest
import pytest_twisted
from sqlalchemy import func, select, update
from twisted.internet import defer, reactor, task

from mailet_mta.api import Mail, MailAddress
from mailet_mta.config.model import (
    MailetSpec,
    ProcessorSpec,
    ServerConfig,
    SpoolManagerConfig,
    StorageConfig,
)
from mailet_mta.context import MailetContext
from mailet_mta.directory import Directory
from mailet_mta.spool.intake import SpoolIntake
from mailet_mta.spool.processor import Pipeline
from mailet_mta.spool.run_queue import RunQueue
from mailet_mta.spool.runner import SpoolRunner
from mailet_mta.storage import schema
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database
from mailet_mta.storage.folder_changes import NOTIFY_CHANNEL
from mailet_mta.storage.mailboxes import get_or_create_mailbox, list_messages, mailbox_state
from tests.support import plugins

P = "tests.support.plugins."


def spec(mailet, **params):
    on = params.pop("on_mailet", "error")
    return MailetSpec(mailet=P + mailet, parameters=params, on_mailet_exception=on)


@pytest.fixture
def harness(migrated_db_url, tmp_path):
    made = []

    def build(processors, max_tries=3, lease_seconds=300.0, poll_interval=0.05):
        db = Database(migrated_db_url)
        db.start()
        blobs = BlobStore(tmp_path / "blobs", inline_limit=1024)
        procs = {n: ProcessorSpec(name=n, mailets=p) for n, p in processors.items()}
        procs.setdefault("error", ProcessorSpec(
            name="error", mailets=[spec("KeepIn", repository="error-proc")]))
        config = ServerConfig(servernames=["example.com"],
                              storage=StorageConfig(data_dir=str(tmp_path)),
                              spoolmanager=SpoolManagerConfig(processors=procs))
        directory = Directory(db, config.servernames, config.postmaster_address)
        queue = RunQueue(reactor)
        intake = SpoolIntake(db, blobs, queue, node_name="n1", lease_seconds=lease_seconds)
        ctx = MailetContext(config, directory, blobs, intake=intake)
        pipeline = Pipeline(config.spoolmanager, ctx)
        sm = SpoolRunner(db, blobs, queue, intake, pipeline, threads=4, max_tries=max_tries,
                         node_name="n1", poll_interval=poll_interval,
                         lease_seconds=lease_seconds)
        sm.startService()
        made.append((sm, db))
        return sm, db, blobs

    yield build
    for sm, db in made:
        pytest_twisted.blockon(defer.ensureDeferred(_stop(sm, db)))


async def _stop(sm, db):
    if sm.running:
        await sm.stopService()
    await db.stop()


def count(db, table, **where):
    with db.engine.connect() as conn:
        q = select(func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return conn.execute(q).scalar()


def new_mail(size=100, n=1):
    body = b"Subject: hi\r\n\r\n" + b"x" * size + b"\r\n"
    return Mail(sender=MailAddress.parse("s@example.org"),
                recipients=[MailAddress.parse(f"r{i}@example.com") for i in range(n)],
                message=body), body


async def accept(sm, blobs, mail, body):
    w = blobs.writer()
    w.write(body)
    ref = await w.finish()
    await sm.intake.accept(mail, ref)


async def settle(sm, db, seconds=5.0):
    from twisted.internet import reactor

    for _ in range(int(seconds / 0.05)):
        await sm.wait_idle()
        if count(db, schema.spool) == 0:
            return
        await task.deferLater(reactor, 0.05, lambda: None)


@pytest_twisted.ensureDeferred
async def test_accepted_mail_runs_and_its_effects_commit_with_its_removal(harness):
    sm, db, blobs = harness({"root": [spec("KeepIn", repository="kept")]})
    for size in (10, 5000):             # inline and file blob
        mail, body = new_mail(size)
        await accept(sm, blobs, mail, body)
    await settle(sm, db)
    assert count(db, schema.spool) == 0
    assert count(db, schema.repository_mails, repository="kept") == 2
    with db.engine.connect() as conn:
        rows = conn.execute(select(schema.repository_mails.c.blob_id)).scalars().all()
        sources = blobs.load_sources(conn, rows)
    assert sorted(len(s.read()) for s in sources.values()) == sorted([10 + 17, 5000 + 17])


@pytest_twisted.ensureDeferred
async def test_send_mail_spools_a_new_mail_that_then_runs(harness):
    sm, db, blobs = harness({"root": [spec("Resend", processor="second")],
                             "second": [spec("KeepIn", repository="second")]})
    mail, body = new_mail()
    await accept(sm, blobs, mail, body)
    await settle(sm, db)
    assert count(db, schema.repository_mails, repository="second") == 1
    assert count(db, schema.spool) == 0


@pytest_twisted.ensureDeferred
async def test_propagated_failure_is_retried_and_then_succeeds(harness):
    plugins.FLAKY_FAILS.clear()
    sm, db, blobs = harness({"root": [spec("Flaky", fails="1", on_mailet="propagate"),
                                      spec("KeepIn", repository="done")]})
    mail, body = new_mail()
    await accept(sm, blobs, mail, body)
    await sm.wait_idle()
    with db.engine.connect() as conn:
        row = conn.execute(select(schema.spool)).one()
    assert row.tries == 1 and "temporary trouble" in row.error_message
    # make it due now instead of after the back-off
    from sqlalchemy import update
    with db.engine.begin() as conn:
        conn.execute(update(schema.spool).values(not_before=0))
    await settle(sm, db)
    assert count(db, schema.repository_mails, repository="done") == 1


@pytest_twisted.ensureDeferred
async def test_a_failed_deferred_awaited_by_a_mailet_raises_its_own_error_in_the_mailet(
        harness):
    sm, db, blobs = harness({"root": [spec("LaterBoom")]})
    mail, body = new_mail()
    await accept(sm, blobs, mail, body)
    await settle(sm, db)
    with db.engine.connect() as conn:
        row = conn.execute(select(schema.repository_mails)).one()
    assert row.repository == "error-proc"
    assert "later boom" in row.error_message and "AssertionError" not in row.error_message


@pytest_twisted.ensureDeferred
async def test_mail_failing_max_tries_moves_to_error_repository(harness):
    plugins.FLAKY_FAILS.clear()
    sm, db, blobs = harness({"root": [spec("Flaky", fails="99", on_mailet="propagate")]},
                            max_tries=2)
    mail, body = new_mail()
    await accept(sm, blobs, mail, body)
    from sqlalchemy import update
    for _ in range(2):
        await sm.wait_idle()
        with db.engine.begin() as conn:
            conn.execute(update(schema.spool).values(not_before=0))
        await settle(sm, db, 1.0)
    assert count(db, schema.spool) == 0
    assert count(db, schema.repository_mails, repository="error") == 1


@pytest_twisted.ensureDeferred
async def test_rows_present_at_start_are_claimed_and_processed(harness, migrated_db_url,
                                                               tmp_path):
    # Spool rows written by an earlier process (no owner) run when a manager starts.
    db = Database(migrated_db_url)
    blobs = BlobStore(tmp_path / "blobs", inline_limit=1024)
    from mailet_mta.spool import store
    with db.engine.begin() as conn:
        for _ in range(30):
            mail, body = new_mail(n=2)
            ref = blobs.from_bytes(body)
            blobs.insert_row(conn, ref)
            store.insert_mail(conn, mail, ref.id, owner="dead-node", lease_until=0.0)
    db.engine.dispose()
    sm, db2, _ = harness({"root": [spec("KeepIn", repository="recovered")]})
    await settle(sm, db2)
    assert count(db2, schema.repository_mails, repository="recovered") == 30
    with db2.engine.connect() as conn:
        rcpts = conn.execute(select(schema.repository_mails.c.recipients)).scalars().first()
    assert len(json.loads(rcpts)) == 2


@pytest_twisted.ensureDeferred
async def test_mail_whose_failure_could_not_be_recorded_runs_again_without_restart(
        harness, monkeypatch):
    # The run fails, and so does the write that records the failure: the row stays
    # leased to this node. Only mails in flight have their lease renewed, so the lease
    # runs out and the next poll takes the mail back.
    from mailet_mta.spool import store
    plugins.FLAKY_FAILS.clear()
    real, calls = store.record_failure, []

    def record_failure_fails_once(conn, *args):
        # The writer tries a failed batch's writes once more alone: fail both attempts.
        calls.append(args)
        if len(calls) <= 2:
            raise RuntimeError("disk full")
        return real(conn, *args)

    monkeypatch.setattr(store, "record_failure", record_failure_fails_once)
    sm, db, blobs = harness({"root": [spec("Flaky", fails="1", on_mailet="propagate"),
                                      spec("KeepIn", repository="done")]},
                            lease_seconds=1.5)
    mail, body = new_mail()
    await accept(sm, blobs, mail, body)
    await settle(sm, db, 10.0)
    assert 1 <= len(calls) <= 2           # the failure was never recorded
    assert count(db, schema.repository_mails, repository="done") == 1
    assert count(db, schema.spool) == 0


@pytest_twisted.ensureDeferred
async def test_a_mail_with_an_attribute_json_cannot_hold_is_spooled_with_its_str(harness):
    # Spool, repository and outgoing rows serialise a mail's envelope one way.
    import datetime
    sm, db, blobs = harness({"root": [spec("KeepIn", repository="kept")]})
    mail, _body = new_mail()
    when = datetime.datetime(2026, 12, 3, 12, 0)
    mail.set_attribute("seen", when)
    await sm.intake.inject(mail)
    await settle(sm, db)
    with db.engine.connect() as conn:
        attributes = conn.execute(select(schema.repository_mails.c.attributes)).scalar_one()
    assert json.loads(attributes)["seen"] == str(when)


@pytest_twisted.ensureDeferred
async def test_reconfigure_takes_the_new_limits_and_pipeline_and_retires_the_old_one(harness):
    sm, db, blobs = harness({"root": [spec("KeepIn", repository="old")]})
    old = sm.pipeline
    destroyed = []
    old.destroy = lambda: destroyed.append(True)
    procs = {"root": ProcessorSpec(name="root", mailets=[spec("KeepIn", repository="new")]),
             "error": ProcessorSpec(name="error", mailets=[spec("KeepIn", repository="e")])}
    config = ServerConfig(servernames=["example.com"], spoolmanager=SpoolManagerConfig(
        processors=procs, threads=9, max_tries=7, error_repository="kept-errors"))
    sm.reconfigure(config, Pipeline(config.spoolmanager, old.context))
    assert (sm.threads, sm.max_tries, sm.error_repository) == (9, 7, "kept-errors")
    await sm.wait_idle()
    assert destroyed == [True]
    mail, body = new_mail()
    await accept(sm, blobs, mail, body)
    await settle(sm, db)
    assert count(db, schema.repository_mails, repository="new") == 1
    assert count(db, schema.repository_mails, repository="old") == 0


@pytest.fixture
def spool_deletes():
    """The ``DELETE FROM spool`` statements every connection opened meanwhile sends,
    counted at the driver (psycopg's cursor, sqlite3's trace callback)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    sent: list[str] = []

    def note(sql):
        if " ".join(str(sql).split()).upper().startswith("DELETE FROM SPOOL"):
            sent.append(sql)

    def on_connect(dbapi_conn, _record):
        if hasattr(dbapi_conn, "set_trace_callback"):       # sqlite3
            dbapi_conn.set_trace_callback(note)
            return
        base = dbapi_conn.cursor_factory                     # psycopg

        class Counting(base):
            def execute(self, query, *args, **kwargs):
                note(query)
                return super().execute(query, *args, **kwargs)

            def executemany(self, query, *args, **kwargs):
                note(query)
                return super().executemany(query, *args, **kwargs)

        dbapi_conn.cursor_factory = Counting

    event.listen(Engine, "connect", on_connect)
    yield sent
    event.remove(Engine, "connect", on_connect)


async def _held(names, seconds=5.0):
    """Wait until the runs of every mail in ``names`` wait in the Hold mailet."""
    for _ in range(int(seconds / 0.02)):
        if all(name in plugins.HELD for name in names):
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"held: {sorted(plugins.HELD)}, wanted {sorted(names)}")


@pytest.fixture
def held():
    """plugins.HELD, emptied; runs still held at the end are let go (the spool runner
    waits for its runs when it stops)."""
    plugins.HELD.clear()
    yield plugins.HELD
    for d in plugins.HELD.values():
        if not d.called:
            d.callback(None)


@pytest_twisted.ensureDeferred
async def test_runs_that_finish_together_remove_their_mails_in_one_statement(
        harness, held, spool_deletes):
    """The lease-checked removal of every mail a batch finishes is one DELETE (one
    round trip on PostgreSQL), not one per mail."""
    sm, db, blobs = harness({"root": [spec("Hold"), spec("KeepIn", repository="kept")]})
    mails = [new_mail() for _ in range(4)]               # the runner's 4 threads
    for mail, body in mails:
        await accept(sm, blobs, mail, body)
    await _held([mail.name for mail, _ in mails])
    before = len(spool_deletes)
    for mail, _ in mails:                                 # in one reactor turn
        held[mail.name].callback(None)
    await settle(sm, db)
    assert count(db, schema.spool) == 0
    assert count(db, schema.repository_mails, repository="kept") == 4
    assert 1 <= len(spool_deletes) - before <= 2


@pytest.mark.parametrize("keeper", ["repository", "mailbox"])
@pytest_twisted.ensureDeferred
async def test_a_mail_another_node_took_over_is_not_removed_and_its_run_is_discarded(
        harness, held, keeper):
    """While a mail runs here its lease runs out and another node claims it: the run's
    results do not commit and its row stays, the other node's; a mail that finished in
    the same batch is removed with its results. Kept in a repository (a write with no
    flight form) or delivered to a mailbox (on PostgreSQL a flight whose lease check
    fails, then the batch again the ordinary way)."""
    keep = (spec("KeepIn", repository="kept") if keeper == "repository"
            else spec("StoreIn", user="u"))
    sm, db, blobs = harness({"root": [spec("Hold"), keep]}, poll_interval=60)
    with db.transaction() as conn:
        get_or_create_mailbox(conn, "u")
    failed_flights = db.writer.flights_failed
    (taken, taken_body), (kept, kept_body) = new_mail(), new_mail()
    await accept(sm, blobs, taken, taken_body)
    await accept(sm, blobs, kept, kept_body)
    await _held([taken.name, kept.name])
    with db.transaction() as conn:
        conn.execute(update(schema.spool).where(schema.spool.c.name == taken.name)
                     .values(owner="n2", lease_until=time.time() + 300))
    held[taken.name].callback(None)
    held[kept.name].callback(None)
    for _ in range(250):
        await sm.wait_idle()
        if count(db, schema.spool) == 1:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    await sm.wait_idle()
    with db.engine.connect() as conn:
        rows = conn.execute(select(schema.spool.c.name, schema.spool.c.owner)).all()
        kept_names = conn.execute(select(schema.repository_mails.c.name)).scalars().all()
        stored = list_messages(conn, "u")
    assert [(r.name, r.owner) for r in rows] == [(taken.name, "n2")]
    if keeper == "repository":
        assert kept_names == [kept.name]
    else:
        assert [m.uid for m in stored] == [1]
        assert count(db, schema.messages) == 1
        if not db.is_sqlite:
            assert db.writer.flights_failed > failed_flights


@pytest_twisted.ensureDeferred
async def test_deliveries_that_finish_together_commit_in_one_flight(harness, held):
    """Runs that deliver to mailboxes and finish together commit with their spool
    removals; on PostgreSQL the batch is sent whole with its COMMIT (no result read
    before it), and the first delivery to a folder that does not exist yet (its
    statement in the flight fails) creates the folder the ordinary way. Every message
    is stored once, uids 1…n, and on PostgreSQL the folder's watchers are notified."""
    sm, db, blobs = harness({"root": [spec("Hold"), spec("StoreIn", user="u")]},
                            poll_interval=60)
    listener = None
    if not db.is_sqlite:
        import psycopg

        listener = psycopg.connect(db.engine.url.set(drivername="postgresql")
                                   .render_as_string(hide_password=False),
                                   autocommit=True)
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
    try:
        first, first_body = new_mail()
        await accept(sm, blobs, first, first_body)
        await _held([first.name])
        failed_flights = db.writer.flights_failed
        held[first.name].callback(None)
        await settle(sm, db)
        if not db.is_sqlite:
            assert db.writer.flights_failed == failed_flights + 1   # INBOX was missing
        mails = [new_mail() for _ in range(4)]               # the runner's 4 threads
        for mail, body in mails:
            await accept(sm, blobs, mail, body)
        await _held([mail.name for mail, _ in mails])
        flown, failed_flights = db.writer.flown_functions, db.writer.flights_failed
        for mail, _ in mails:                                 # in one reactor turn
            held[mail.name].callback(None)
        await settle(sm, db)
        assert count(db, schema.spool) == 0
        with db.engine.connect() as conn:
            stored = list_messages(conn, "u")
            state = mailbox_state(conn, "u")
        assert [m.uid for m in stored] == [1, 2, 3, 4, 5]
        assert state is not None and state[2:4] == (6, 5)   # uid_next, message count
        if listener is not None:
            assert db.writer.flown_functions == flown + 4
            assert db.writer.flights_failed == failed_flights
            payloads = {n.payload for n in listener.notifies(timeout=2, stop_after=1)}
            assert str(state[0]) in payloads
    finally:
        if listener is not None:
            listener.close()


@pytest_twisted.ensureDeferred
async def test_a_quota_the_directory_does_not_know_yet_is_still_checked(harness):
    """A user's quota set after the directory was read: the delivery (on PostgreSQL a
    flight whose statement stores nothing for a user with a quota) is checked against
    it at the commit, and a message over it is not stored; the run is retried."""
    sm, db, blobs = harness({"root": [spec("StoreIn", user="q")]}, poll_interval=60)
    with db.transaction() as conn:
        conn.execute(schema.users.insert().values(name="q", password_hash="x", quota=50,
                                                  created=time.time()))
        get_or_create_mailbox(conn, "q")
    mail, body = new_mail(size=100)
    await accept(sm, blobs, mail, body)
    for _ in range(250):
        await sm.wait_idle()
        with db.engine.connect() as conn:
            tries = conn.execute(select(schema.spool.c.tries)).scalar()
        if tries:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    with db.engine.connect() as conn:
        row = conn.execute(select(schema.spool.c.tries, schema.spool.c.error_message)).one()
    assert row.tries == 1 and "mailbox full" in row.error_message
    assert count(db, schema.messages) == 0
