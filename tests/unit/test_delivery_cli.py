"""``mailet-mta queue`` against a real SQLite database."""

from __future__ import annotations

import json
import shutil

import pytest

from mailet_mta.address import MailAddress
from mailet_mta.cli import common
from mailet_mta.cli import queue as queue_cli
from mailet_mta.delivery import queue_store
from mailet_mta.mail import Mail
from mailet_mta.storage.db import Database


@pytest.fixture
def db(tmp_path, monkeypatch, migrated_sqlite_file):
    shutil.copyfile(migrated_sqlite_file, tmp_path / "cli.sqlite3")
    database = Database("sqlite:///" + str(tmp_path / "cli.sqlite3"))
    monkeypatch.setattr(common, "open_database", lambda args: (None, Database(database.url)))
    mail = Mail(sender=MailAddress.parse("alice@origin.test"),
                recipients=[MailAddress.parse("bob@one.test"), MailAddress.parse("c@two.test")],
                message=b"x")
    with database.transaction() as conn:
        ids = queue_store.enqueue(conn, mail, "blob", "outgoing",
                                  {"gatewayPassword": "secret"}, now=4e9)
    database.ids = ids
    yield database
    database.engine.dispose()


def test_list_json_shows_entries_without_the_gateway_password(db, capsys):
    assert queue_cli.main(["queue", "list", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert sorted(e["domain"] for e in data) == ["one.test", "two.test"]
    assert "secret" not in out


def test_list_and_show_print_readable_lines(db, capsys):
    assert queue_cli.main(["queue", "list"]) == 0
    assert "one.test" in capsys.readouterr().out
    assert queue_cli.main(["queue", "show", str(db.ids[0])]) == 0
    assert "pending  bob@one.test" in capsys.readouterr().out


def test_retry_makes_an_entry_due_now(db, capsys):
    assert queue_cli.main(["queue", "retry", str(db.ids[0])]) == 0
    with db.transaction() as conn:
        entries = {e.id: e for e in queue_store.list_entries(conn)}
    assert entries[db.ids[0]].next_attempt < 4e9
    assert entries[db.ids[1]].next_attempt == 4e9


def test_flush_and_retry_all_make_every_entry_due(db, capsys):
    assert queue_cli.main(["queue", "flush"]) == 0
    assert "2 entries due now" in capsys.readouterr().out
    assert queue_cli.main(["queue", "retry", "all"]) == 0


def test_delete_removes_the_entry_and_unknown_ids_are_errors(db, capsys):
    assert queue_cli.main(["queue", "delete", str(db.ids[0])]) == 0
    assert queue_cli.main(["queue", "delete", str(db.ids[0])]) == 1
    assert "no queue entry" in capsys.readouterr().err
    assert queue_cli.main(["queue", "retry", "soon"]) == 1
    assert queue_cli.main(["queue", "show", "999"]) == 1
