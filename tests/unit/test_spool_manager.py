"""The durable spool: accept, run, commit effects atomically, retry, error repository."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from sqlalchemy import func, select
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
from tests.support import plugins

P = "tests.support.plugins."


def spec(mailet, **params):
    on = params.pop("on_mailet", "error")
    return MailetSpec(mailet=P + mailet, parameters=params, on_mailet_exception=on)


@pytest.fixture
def harness(migrated_db_url, tmp_path):
    made = []

    def build(processors, max_tries=3, lease_seconds=300.0):
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
                         node_name="n1", poll_interval=0.05, lease_seconds=lease_seconds)
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
