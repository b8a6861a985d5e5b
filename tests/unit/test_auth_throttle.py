"""The login throttle: reservations before the check, address grouping, bounded tables,
and one budget for every process sharing a database."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, task

from mailet_mta.storage import auth_failures, domains, passwords, schema, users
from mailet_mta.storage.auth_throttle import AuthThrottle, client_key
from mailet_mta.storage.authenticator import Authenticator
from mailet_mta.storage.db import Database


def test_ipv4_mapped_ipv6_counts_as_the_ipv4_address():
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    t = AuthThrottle(task.Clock(), max_failures=2)
    t.record_failure("::ffff:192.0.2.7")
    assert t.record_failure("192.0.2.7")
    assert t.is_throttled("::ffff:192.0.2.7") and t.is_throttled("192.0.2.7")


def test_ipv6_addresses_are_grouped_by_their_64_prefix():
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9%eth0") \
        == "2001:db8:1:2::/64"
    t = AuthThrottle(task.Clock(), max_failures=3)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:a:b:c:d"):
        t.record_failure(host)
    assert t.is_throttled("2001:db8:1:2::77")
    assert not t.is_throttled("2001:db8:1:3::1")          # the next /64 is someone else
    assert client_key("2001:db8:1:2::1", ipv6_prefix=48) == "2001:db8:1::/48"


def test_reservations_count_with_failures_against_the_budget():
    t = AuthThrottle(task.Clock(), max_failures=5, max_concurrent=10)
    slots = [t.reserve("192.0.2.1") for _ in range(8)]
    assert [s.refused for s in slots] == [None] * 5 + ["blocked"] * 3
    for s in slots[:5]:
        t.release(s, failed=True)
    assert t.is_throttled("192.0.2.1")
    assert t.reserve("192.0.2.1").refused == "blocked"
    assert t.reserve("192.0.2.2").refused is None


def test_successful_checks_give_their_slot_back():
    t = AuthThrottle(task.Clock(), max_failures=2, max_concurrent=10)
    for _ in range(10):
        slot = t.reserve("192.0.2.1")
        assert slot.refused is None
        assert not t.release(slot, failed=False)
    assert t.tracked()["in_flight"] == 0


def test_concurrent_checks_per_address_are_capped():
    t = AuthThrottle(task.Clock(), max_failures=50, max_concurrent=3)
    slots = [t.reserve("192.0.2.1") for _ in range(4)]
    assert [s.refused for s in slots] == [None, None, None, "busy"]
    t.release(slots[0], failed=False)
    assert t.reserve("192.0.2.1").refused is None
    assert t.reserve("192.0.2.9").refused is None          # other addresses unaffected


def test_blocked_and_failure_tables_shrink_when_entries_expire():
    clock = task.Clock()
    t = AuthThrottle(clock, max_failures=2, window=60, block=120)
    for i in range(50):
        t.record_failure(f"10.0.0.{i}")
        t.record_failure(f"10.0.0.{i}")
        t.record_failure(f"10.1.0.{i}")                   # one failure: not blocked
    assert t.tracked()["blocked"] == 50 and t.tracked()["failures"] == 50
    clock.advance(61)
    assert not t.is_throttled("10.9.9.9")
    assert t.tracked()["failures"] == 0 and t.tracked()["blocked"] == 50
    clock.advance(60)
    t.reserve("10.9.9.9")
    assert t.tracked()["blocked"] == 0


def test_every_table_has_a_maximum_size():
    t = AuthThrottle(task.Clock(), max_failures=1, max_tracked=10, max_concurrent=5)
    for i in range(100):
        t.record_failure(f"10.0.{i // 250}.{i % 250}")
    assert t.tracked()["failures"] <= 10 and t.tracked()["blocked"] == 10
    slots = [t.reserve(f"10.2.0.{i}") for i in range(20)]
    assert t.tracked()["in_flight"] == 10
    assert [s.refused for s in slots[10:]] == ["busy"] * 10


@pytest.fixture
def shared_db(two_processes_db):
    """One database two 'processes' (two Database objects) share."""
    with two_processes_db[0].transaction() as conn:
        domains.add_domain(conn, "example.com")
        users.add_user(conn, "bob@example.com", passwords.hash_password("right"))
    return two_processes_db


@pytest_twisted.ensureDeferred
async def test_two_processes_on_one_database_share_one_budget(shared_db):
    first, second = shared_db
    node_a = Authenticator(first, failure_delay=0, throttle=AuthThrottle(max_failures=3))
    node_b = Authenticator(second, failure_delay=0, throttle=AuthThrottle(max_failures=3))
    ip = "198.51.100.7"
    for node in (node_a, node_a, node_b):
        result = await node.check("bob@example.com", "wrong", ip)
        assert result.verified and result.user is None
    # Each process has seen fewer than three failures, the cluster has seen three.
    result = await node_b.check("bob@example.com", "right", ip)
    assert not result.verified and result.throttled
    result = await node_a.check("bob@example.com", "right", ip)
    assert not result.verified and result.throttled
    assert (await node_b.check("bob@example.com", "right", "198.51.100.8")).user \
        == "bob@example.com"


@pytest_twisted.ensureDeferred
async def test_parallel_attempts_get_at_most_the_budget_verified(shared_db, monkeypatch):
    first, _ = shared_db
    verified = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password",
                        lambda stored, pw: verified.append(pw) or real(stored, pw))
    auth = Authenticator(first, failure_delay=0,
                         throttle=AuthThrottle(max_failures=5, max_concurrent=40))
    results = await defer.gatherResults(
        [auth.check("bob@example.com", f"wrong {i}", "192.0.2.50") for i in range(39)])
    last = await auth.check("bob@example.com", "right", "192.0.2.50")
    assert len(verified) <= 5 and "right" not in verified, verified
    assert sum(r.verified for r in results) == len(verified)
    assert not last.verified and last.user is None


def test_shared_failure_rows_are_pruned_and_bounded(tmp_path):
    db = Database("sqlite:///" + str(tmp_path / "f.sqlite3"))
    db.upgrade()
    with db.transaction() as conn:
        for i in range(50):
            auth_failures.record_failure(conn, f"10.0.0.{i}", float(i), "node")
        assert auth_failures.prune(conn, before=10.0, max_rows=30) == 20
        rows = conn.execute(schema.auth_failures.select()).all()
        assert len(rows) == 30 and min(r.at for r in rows) == 20.0
    db.engine.dispose()
