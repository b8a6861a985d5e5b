"""``mailet-mta status`` over a real database: spool states, queue per destination."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import insert

from mailet_mta.cli import main
from mailet_mta.storage import schema
from mailet_mta.storage.db import Database, default_url


@pytest.fixture
def site(tmp_path):
    data = tmp_path / "var"
    data.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(
        f"servernames: [example.com]\nstorage: {{data_dir: {data}}}\n"
        "spoolmanager: {processors: {root: [{match: All, class: Null}], "
        "error: [{match: All, class: Null}]}}\n")
    db = Database(default_url(data))
    db.upgrade()
    yield config, db
    db.engine.dispose()


def outgoing_row(domain, next_attempt, last_error=None, statuses=("pending",)):
    now = time.time()
    return dict(queue="outgoing", mail_name=f"m-{domain}-{next_attempt}", domain=domain,
                sender="a@example.com", attributes="{}", options="{}", blob_id="b",
                recipients=json.dumps([{"address": f"u{i}@{domain}", "status": s}
                                       for i, s in enumerate(statuses)]),
                attempts=2, dns_failures=0, next_attempt=next_attempt,
                last_error=last_error, created=now)


def test_status_shows_the_queue_per_destination_with_next_attempt_and_last_error(
        site, capsys):
    config, db = site
    later = time.time() + 3600
    with db.transaction() as conn:
        conn.execute(insert(schema.outgoing), [
            outgoing_row("far.example", later, "451 4.7.1 greylisted, try later",
                         ("pending", "sent")),
            outgoing_row("far.example", later + 60, None),
            outgoing_row("near.example", later - 60, "connection refused")])
    assert main(["status", "--config", str(config), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    far = next(o for o in report["outgoing"] if o["destination"] == "far.example")
    assert far["mails"] == 2 and far["pending_recipients"] == 2
    assert far["next_attempt"] == pytest.approx(later)
    assert far["last_error"] == "451 4.7.1 greylisted, try later"
    assert [o["destination"] for o in report["outgoing"]] == ["near.example", "far.example"]
    assert report["server"]["running"] is False
    assert main(["status", "--config", str(config)]) == 3
    table = capsys.readouterr().out
    assert "far.example" in table and "greylisted" in table
    assert "server: not running" in table


def test_status_counts_repositories_with_the_error_repository_first(site, capsys):
    config, db = site
    with db.transaction() as conn:
        for repo in ("relay-denied", "relay-denied", "error"):
            conn.execute(insert(schema.repository_mails).values(
                repository=repo, name="n", state="error", sender=None, recipients="[]",
                attributes="{}", remote_addr="", remote_host="", blob_id="b",
                created=time.time()))
    main(["status", "--config", str(config), "--json"])
    repos = json.loads(capsys.readouterr().out)["repositories"]
    assert repos == [{"repository": "error", "mails": 1, "error_repository": True},
                     {"repository": "relay-denied", "mails": 2, "error_repository": False}]


def test_a_stale_listeners_file_reads_as_not_running(site, capsys, tmp_path):
    config, _db = site
    (tmp_path / "var" / "listeners.json").write_text(json.dumps(
        {"pid": 2 ** 22 + 12345, "node": "n", "listeners": {
            "smtp": {"protocol": "smtp", "host": "127.0.0.1", "port": 25}}}))
    main(["status", "--config", str(config)])
    out = capsys.readouterr().out
    assert "has exited" in out and "127.0.0.1:25" in out
