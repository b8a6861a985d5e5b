"""Password hashing, login throttling and the Authenticator."""

from __future__ import annotations

import shutil
import time

import pytest
import pytest_twisted
from twisted.internet import task

from mailet_mta.storage import domains, passwords, users
from mailet_mta.storage.auth_throttle import AuthThrottle
from mailet_mta.storage.authenticator import Authenticator
from mailet_mta.storage.db import Database


def test_hash_is_argon2id_and_verifies():
    h = passwords.hash_password("s3cret")
    assert h.startswith("$argon2id$")
    assert passwords.verify_password(h, "s3cret")
    assert not passwords.verify_password(h, "S3cret")
    assert not passwords.verify_password("not a hash", "s3cret")
    assert not passwords.needs_rehash(h)


def test_hash_with_other_parameters_needs_rehash():
    from argon2 import PasswordHasher

    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    assert passwords.verify_password(old, "pw")
    assert passwords.needs_rehash(old)


def test_hashes_are_argon2id_with_the_documented_cost():
    # The cost (not the machine's speed) is what a test can pin: ~20 ms per check was
    # measured with these parameters on the reference machine (see passwords.py).
    h = passwords.hash_password("pw")
    assert h.startswith("$argon2id$v=19$m=19456,t=2,p=2$")
    assert passwords.verify_password(h, "pw") and not passwords.verify_password(h, "px")


def test_empty_password_cannot_be_hashed():
    with pytest.raises(ValueError):
        passwords.hash_password("")


def test_throttle_blocks_an_ip_after_five_failures_within_the_window():
    clock = task.Clock()
    t = AuthThrottle(clock, max_failures=5, window=300, block=600)
    for _ in range(4):
        assert not t.record_failure("192.0.2.1")
    assert not t.is_throttled("192.0.2.1")
    assert t.record_failure("192.0.2.1")
    assert t.is_throttled("192.0.2.1")
    assert not t.is_throttled("192.0.2.2")
    clock.advance(599)
    assert t.is_throttled("192.0.2.1")
    clock.advance(2)
    assert not t.is_throttled("192.0.2.1")


def test_throttle_window_slides():
    clock = task.Clock()
    t = AuthThrottle(clock, max_failures=3, window=60, block=60)
    t.record_failure("ip")
    clock.advance(50)
    t.record_failure("ip")
    clock.advance(20)              # the first failure left the window
    assert not t.record_failure("ip")
    assert t.record_failure("ip")


def test_throttle_tracks_a_bounded_number_of_addresses():
    t = AuthThrottle(task.Clock(), max_tracked=10)
    for i in range(100):
        t.record_failure(f"10.0.0.{i}")
    assert len(t._failures) == 10


@pytest.fixture
def db(tmp_path, migrated_sqlite_file):
    shutil.copyfile(migrated_sqlite_file, tmp_path / "auth.sqlite3")
    database = Database("sqlite:///" + str(tmp_path / "auth.sqlite3"))
    with database.transaction() as conn:
        domains.add_domain(conn, "example.com")
        users.add_user(conn, "bob@example.com", passwords.hash_password("right"))
    database.start()
    yield database
    pytest_twisted.blockon(database.stop())


@pytest_twisted.ensureDeferred
async def test_authenticate_returns_canonical_user(db):
    auth = Authenticator(db, failure_delay=0)
    assert await auth.authenticate("Bob@Example.COM", "right", "127.0.0.1") == "bob@example.com"


@pytest_twisted.ensureDeferred
async def test_bare_name_logs_in_at_the_default_domain(db):
    auth = Authenticator(db, failure_delay=0, default_domain="example.com")
    assert await auth.authenticate("bob", "right", "127.0.0.1") == "bob@example.com"
    assert await Authenticator(db, failure_delay=0).authenticate("bob", "right", "x") is None


@pytest_twisted.ensureDeferred
async def test_failed_login_answers_only_after_the_failure_delay(db):
    auth = Authenticator(db, failure_delay=0.3)
    start = time.monotonic()
    assert await auth.authenticate("bob@example.com", "wrong", "127.0.0.1") is None
    assert time.monotonic() - start >= 0.29
    start = time.monotonic()
    assert await auth.authenticate("nobody@example.com", "x", "127.0.0.1") is None
    assert time.monotonic() - start >= 0.29


@pytest_twisted.ensureDeferred
async def test_throttled_ip_fails_fast_but_other_ips_still_log_in(db):
    auth = Authenticator(db, failure_delay=0, throttle=AuthThrottle(max_failures=3))
    for _ in range(3):
        result = await auth.check("bob@example.com", "wrong", "192.0.2.9")
    assert result.throttled
    result = await auth.check("bob@example.com", "right", "192.0.2.9")
    assert result.user is None and result.throttled
    assert auth.is_throttled("192.0.2.9")
    assert await auth.authenticate("bob@example.com", "right", "192.0.2.10") \
        == "bob@example.com"


@pytest_twisted.ensureDeferred
async def test_login_with_outdated_hash_stores_a_fresh_one(db):
    from argon2 import PasswordHasher
    from twisted.internet import reactor
    from twisted.internet import task as ttask

    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("right")
    with db.transaction() as conn:
        users.set_password(conn, "bob@example.com", old)
    auth = Authenticator(db, failure_delay=0)
    assert await auth.authenticate("bob@example.com", "right", "x") == "bob@example.com"
    for _ in range(50):
        await ttask.deferLater(reactor, 0.02, lambda: None)
        with db.transaction() as conn:
            if users.get_password_hash(conn, "bob@example.com") != old:
                break
    with db.transaction() as conn:
        assert not passwords.needs_rehash(users.get_password_hash(conn, "bob@example.com"))


@pytest_twisted.ensureDeferred
async def test_prepare_makes_the_dummy_hash_before_the_first_unknown_user(db, monkeypatch):
    monkeypatch.setattr(passwords, "_DUMMY_HASH", None)
    auth = Authenticator(db, failure_delay=0)
    await auth.prepare()
    made = passwords._DUMMY_HASH
    assert made is not None and not passwords.needs_rehash(made)
    assert await auth.authenticate("nobody@example.com", "x", "127.0.0.1") is None
    assert passwords._DUMMY_HASH == made


@pytest_twisted.ensureDeferred
async def test_passwords_are_verified_on_the_authenticator_threads_not_the_readers(
        db, monkeypatch):
    import threading
    seen = []
    real = passwords.verify_password

    def spy(stored, password):
        seen.append(threading.current_thread().name)
        return real(stored, password)

    monkeypatch.setattr(passwords, "verify_password", spy)
    auth = Authenticator(db, failure_delay=0)
    assert await auth.authenticate("bob@example.com", "right", "127.0.0.1") == "bob@example.com"
    assert await auth.authenticate("bob@example.com", "wrong", "127.0.0.1") is None
    assert len(seen) == 2 and all(name.startswith("PoolThread-auth") for name in seen), seen
