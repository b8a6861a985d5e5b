"""The outgoing table: grouping by domain, claiming with leases, administration."""

from __future__ import annotations

import pytest

from mailet_mta.address import MailAddress
from mailet_mta.delivery import queue_store
from mailet_mta.mail import Mail
from mailet_mta.storage.db import Database


@pytest.fixture
def db(migrated_db_url):
    database = Database(migrated_db_url)
    yield database
    database.engine.dispose()


def mail(*recipients, sender="alice@origin.test"):
    return Mail(sender=MailAddress.parse(sender) if sender else None,
                recipients=[MailAddress.parse(r) for r in recipients], message=b"x",
                attributes={"k": [1, 2]})


def test_enqueue_groups_recipients_by_domain(db):
    m = mail("a@one.test", "b@two.test", "c@ONE.test", "a@one.test")
    with db.transaction() as conn:
        ids = queue_store.enqueue(conn, m, "blob1", "outgoing", {"maxRetries": 2}, now=100.0)
        entries = queue_store.list_entries(conn)
    assert len(ids) == 2
    by_domain = {e.domain: e for e in entries}
    assert [r["address"] for r in by_domain["one.test"].recipients] == ["a@one.test",
                                                                       "c@one.test"]
    assert [r["address"] for r in by_domain["two.test"].recipients] == ["b@two.test"]
    e = by_domain["one.test"]
    assert all(r["status"] == "pending" for r in e.recipients)
    assert e.next_attempt == 100.0 and e.attempts == 0 and e.mail_name == m.name
    assert e.sender == "alice@origin.test" and e.attributes == {"k": [1, 2]}
    assert e.options == {"maxRetries": 2} and e.blob_id == "blob1"


def test_enqueue_with_a_gateway_makes_one_row(db):
    with db.transaction() as conn:
        ids = queue_store.enqueue(conn, mail("a@one.test", "b@two.test", sender=None),
                                  "blob1", "outgoing", {"gateways": [["relay", 25]]})
        (entry,) = queue_store.list_entries(conn)
    assert len(ids) == 1 and len(entry.recipients) == 2 and entry.sender is None


def test_claim_takes_due_rows_once_until_the_lease_expires(db):
    with db.transaction() as conn:
        queue_store.enqueue(conn, mail("a@one.test"), "b", "outgoing", {}, now=100.0)
        queue_store.enqueue(conn, mail("a@two.test"), "b", "outgoing", {}, now=500.0)
    with db.transaction() as conn:
        first = queue_store.claim_due(conn, "node-a", now=200.0, lease=60, limit=10)
    with db.transaction() as conn:
        second = queue_store.claim_due(conn, "node-b", now=210.0, lease=60, limit=10)
    with db.transaction() as conn:
        third = queue_store.claim_due(conn, "node-b", now=270.0, lease=60, limit=10)
    assert [e.domain for e in first] == ["one.test"]
    assert second == []
    assert [e.domain for e in third] == ["one.test"] and third[0].owner == "node-b"


def test_recording_outcomes_needs_the_lease(db):
    with db.transaction() as conn:
        (eid,) = queue_store.enqueue(conn, mail("a@one.test"), "b", "outgoing", {}, now=1.0)
        (entry,) = queue_store.claim_due(conn, "node-a", now=2.0, lease=60, limit=10)
        entry.recipients[0]["status"] = "sent"
        assert queue_store.record_recipients(conn, eid, "node-a", entry.recipients)
        assert not queue_store.record_recipients(conn, eid, "node-b", entry.recipients)
        assert queue_store.get_entry(conn, eid).recipients[0]["status"] == "sent"


def test_reschedule_releases_the_row_and_retry_now_makes_it_due(db):
    with db.transaction() as conn:
        (eid,) = queue_store.enqueue(conn, mail("a@one.test"), "b", "outgoing", {}, now=1.0)
        (entry,) = queue_store.claim_due(conn, "node-a", now=2.0, lease=60, limit=10)
        entry.attempts, entry.last_error = 1, "451 later"
        queue_store.reschedule(conn, entry, next_attempt=1000.0)
        assert queue_store.claim_due(conn, "node-a", now=3.0, lease=60, limit=10) == []
        assert queue_store.retry_now(conn, eid, now=4.0) == 1
        (again,) = queue_store.claim_due(conn, "node-a", now=5.0, lease=60, limit=10)
        assert again.attempts == 1 and again.last_error == "451 later"
        assert queue_store.remove(conn, eid) and queue_store.list_entries(conn) == []
