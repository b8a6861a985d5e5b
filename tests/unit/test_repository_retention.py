"""Repositories: bounded by age and count, and reprocessing that does not loop.

``purge`` deletes by age and/or keeps the newest N; ``apply_retention`` enforces the
configured bounds (what the server runs every ``purgeInterval``); a mail reprocessed
from ``error`` restarts in the processor it failed in (or ``root``), not in ``error``.
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from sqlalchemy import select, update

from mailet_mta.api import ATTR_ERROR_PROCESSOR, Mail, MailAddress
from mailet_mta.config.retention import RetentionRule
from mailet_mta.storage import repositories, schema
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database
from tests.support import plugins
from tests.unit.test_pipeline import mail as pipeline_mail
from tests.unit.test_pipeline import pair, pipeline


@pytest.fixture
def db(migrated_db_url):
    database = Database(migrated_db_url)
    yield database
    database.engine.dispose()


@pytest.fixture
def blob_id(db, tmp_path):
    ref = BlobStore(tmp_path / "blobs").from_bytes(b"Subject: x\r\n\r\nbody\r\n")
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
    return ref.id


def stored(name, state="relay-denied", **attributes):
    return Mail(name, sender=MailAddress.parse("a@remote.example"),
                recipients=[MailAddress.parse("b@far.example")], state=state,
                attributes=attributes)


def fill(db, blob_id, repository, count, age_step=86400.0):
    """``count`` mails, the first the oldest (``age_step`` seconds between them)."""
    now = time.time()
    with db.transaction() as conn:
        for i in range(count):
            row = repositories.store(conn, repository, stored(f"{repository}-{i}"), blob_id)
            conn.execute(update(schema.repository_mails)
                         .where(schema.repository_mails.c.id == row)
                         .values(created=now - (count - i) * age_step))


def names_in(db, repository):
    with db.transaction() as conn:
        return [m.name for m in repositories.list_mails(conn, repository)]


def test_purge_by_age_and_by_count_touches_only_that_repository(db, blob_id):
    fill(db, blob_id, "relay-denied", 5)
    fill(db, blob_id, "error", 2)
    with db.transaction() as conn:
        assert repositories.purge(conn, "relay-denied", older_than=3.5 * 86400) == 2
    assert names_in(db, "relay-denied") == [f"relay-denied-{i}" for i in (2, 3, 4)]
    with db.transaction() as conn:
        assert repositories.purge(conn, "relay-denied", keep=1) == 2
    assert names_in(db, "relay-denied") == ["relay-denied-4"]
    with db.transaction() as conn:
        assert repositories.purge(conn, "relay-denied", keep=0) == 1
    assert names_in(db, "relay-denied") == [] and len(names_in(db, "error")) == 2


def test_retention_rules_bound_each_named_repository_and_leave_others(db, blob_id):
    fill(db, blob_id, "relay-denied", 6)
    fill(db, blob_id, "address-error", 4)
    fill(db, blob_id, "error", 3)
    rules = {"relay-denied": RetentionRule(max_age=0, max_mails=2),
             "address-error": RetentionRule(max_age=2.5 * 86400, max_mails=0),
             "rrt-error": RetentionRule(max_age=86400, max_mails=10)}
    with db.transaction() as conn:
        purged = repositories.apply_retention(conn, rules)
    assert purged == {"relay-denied": 4, "address-error": 2}
    assert names_in(db, "relay-denied") == ["relay-denied-4", "relay-denied-5"]
    assert names_in(db, "address-error") == ["address-error-2", "address-error-3"]
    assert len(names_in(db, "error")) == 3


@pytest_twisted.ensureDeferred
async def test_a_mail_sent_to_error_remembers_the_processor_it_failed_in():
    plugins.reset()
    p = pipeline({"root": [pair("GoTo", processor="transport")],
                  "transport": [pair("Boom")]})
    failed = pipeline_mail("a@x.org")
    await p.run(failed)
    assert failed.get_attribute(ATTR_ERROR_PROCESSOR) == "transport"


def test_reprocess_from_error_restarts_where_the_mail_failed_not_in_error(db, blob_id):
    with db.transaction() as conn:
        repositories.store(conn, "error", stored("failed-in-transport", state="error",
                                                 **{ATTR_ERROR_PROCESSOR: "transport"}),
                           blob_id)
        repositories.store(conn, "error", stored("unknown-origin", state="error"), blob_id)
        repositories.store(conn, "relay-denied", stored("denied"), blob_id)
    with db.transaction() as conn:
        moved = repositories.reprocess(conn, "error")
        moved += repositories.reprocess(conn, "relay-denied", state="transport")
    assert moved == [("failed-in-transport", "transport"), ("unknown-origin", "root"),
                     ("denied", "transport")]
    with db.transaction() as conn:
        rows = conn.execute(select(schema.spool.c.name, schema.spool.c.state)).all()
    states = dict(rows)
    assert "error" not in states.values()
    assert states == {"failed-in-transport": "transport", "unknown-origin": "root",
                      "denied": "transport"}


def test_reprocess_into_an_unknown_processor_is_refused_naming_the_processors(
        tmp_path, capsys):
    import yaml

    from mailet_mta.cli import main
    from tests.support.server import base_config

    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "var")))
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    capsys.readouterr()
    code = main(["repository", "reprocess", "error", "--state", "transprot",
                 "--config", str(path)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, lines
    assert "--state transprot" in lines[0] and str(path) in lines[0]
    assert "transport" in lines[0] and "relay-denied" in lines[0]
