"""Checking a user name and password for SMTP AUTH and POP3 logins.

Lookup and argon2 verification run on the authenticator's own threads (one per two
cores: a verification already uses two), never on the reactor and never queued behind
the database readers' long listings. The same few threads verify every login, so the
memory argon2 fills (19 MiB) stays mapped instead of being faulted in again by
whichever reader thread comes next. A failed attempt is answered only after
``failure_delay`` seconds. Every check first reserves a slot in the
:class:`~mailet_mta.storage.auth_throttle.AuthThrottle` (on the reactor), then, on the
checking thread, reads the address's failures in the shared database
(:mod:`.auth_failures`): an address that keeps failing is refused without a check, in
this process and in every other one. Unknown users cost the same time as wrong
passwords (no user-name oracle).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from . import auth_failures, passwords, schema
from .auth_throttle import AuthThrottle
from .users import UserError, get_password_hash, normalise_user

__all__ = ["Authenticator", "AuthResult"]

log = Logger(namespace="mailet_mta.auth")


_POOL: ThreadPool | None = None


def _hashing_pool(reactor) -> ThreadPool:
    """The process's password threads, started on first use, stopped with the reactor."""
    global _POOL
    if _POOL is None or not _POOL.started:
        workers = max(1, (os.cpu_count() or 2) // passwords.PARALLELISM)
        _POOL = ThreadPool(minthreads=1, maxthreads=workers, name="auth")
        _POOL.start()
        reactor.addSystemEventTrigger("during", "shutdown", _POOL.stop)
    return _POOL


@dataclass(frozen=True)
class AuthResult:
    """The outcome of one login: the canonical user name, or why there is none.

    ``throttled``: the client's address is blocked now (after this attempt).
    ``verified``: the password was checked; False when the throttle refused the attempt
    before any check (answer with a temporary error, not "wrong password").
    """

    user: str | None
    throttled: bool = False
    verified: bool = True

    @property
    def ok(self) -> bool:
        return self.user is not None


_REFUSED = AuthResult(None, throttled=True, verified=False)
PRUNE_EVERY = 60.0          # seconds between prunes of the shared failure rows


class Authenticator:
    """Verifies credentials against the users table.

    ``default_domain`` lets a bare name ``bob`` log in as ``bob@<default_domain>``
    (the primary servername); full addresses always work. With ``shared`` (the default)
    failed logins are also counted in the database, so every process sharing it spends
    one budget per client address.
    """

    def __init__(self, db, clock=None, failure_delay: float = 1.0,
                 throttle: AuthThrottle | None = None, default_domain: str | None = None,
                 shared: bool = True):
        if clock is None:
            from twisted.internet import reactor as clock
        self.db = db
        self.clock = clock
        self.failure_delay = failure_delay
        self.throttle = throttle if throttle is not None else AuthThrottle(clock)
        self.default_domain = default_domain
        self.shared = shared
        self._last_prune = float("-inf")

    def _in_thread(self, fn, *args) -> defer.Deferred:
        """Run ``fn(conn, *args)`` on an authenticator thread with a database connection."""
        from twisted.internet import reactor

        return self.db.read_on(_hashing_pool(reactor), fn, *args)

    def is_throttled(self, client_ip: str) -> bool:
        """True while logins from ``client_ip`` are refused without a check."""
        return self.throttle.is_throttled(client_ip)

    def authenticate(self, username: str, password: str, client_ip: str) -> defer.Deferred:
        """Deferred → the canonical user name, or None (wrong, unknown or throttled)."""
        return self.check(username, password, client_ip).addCallback(lambda r: r.user)

    @defer.inlineCallbacks
    def check(self, username: str, password: str, client_ip: str):
        """Deferred → :class:`AuthResult` (tells a throttled attempt apart)."""
        slot = self.throttle.reserve(client_ip)
        if slot.refused is not None:
            log.info("login of {user!r} from {ip} refused without a check ({why})",
                     user=username, ip=client_ip, why=slot.refused)
            return _REFUSED
        try:
            user, blocked_until = yield self._in_thread(self._verify_within_budget,
                                                        username, password, slot)
        except Exception:
            self.throttle.release(slot, failed=False)
            log.failure("password check for {user!r} failed", user=username)
            raise
        if blocked_until is not None:
            self.throttle.release(slot, failed=False)
            self.throttle.block_until(slot.key, blocked_until)
            log.info("login of {user!r} from {ip} refused without a check (cluster budget)",
                     user=username, ip=client_ip)
            return _REFUSED
        if user is not None:
            self.throttle.release(slot, failed=False)
            return AuthResult(user)
        throttled = self.throttle.release(slot, failed=True)
        log.info("login failed: wrong password for {user!r} from {ip}", user=username,
                 ip=client_ip)
        yield self._share_failure(slot.key, self.throttle.clock.seconds())
        if self.failure_delay > 0:
            yield task.deferLater(self.clock, self.failure_delay, lambda: None)
        return AuthResult(None, throttled=throttled)

    def _verify_within_budget(self, conn, username: str, password: str, slot):
        """On an authenticator thread: ``(user or None, None)`` after a check, or
        ``(None, blocked_until)`` when the cluster's failures leave no budget."""
        if self.shared:
            others, until = auth_failures.shared_state(conn, slot.key, slot.at,
                                                       self.throttle)
            if until or others + slot.failures + slot.ahead >= self.throttle.max_failures:
                return None, until
        return self._verify(conn, username, password), None

    def _share_failure(self, key: str, at: float) -> defer.Deferred:
        """Record a failure in the database (and prune old rows now and then); a
        database error is logged, never turned into a login answer."""
        if not self.shared:
            return defer.succeed(None)
        prune_before = None
        if at - self._last_prune >= PRUNE_EVERY:
            self._last_prune = at
            prune_before = at - self.throttle.window - self.throttle.block

        def write(conn):
            auth_failures.record_failure(conn, key, at, self.throttle.node)
            if prune_before is not None:
                auth_failures.prune(conn, prune_before, self.throttle.max_tracked)

        return self.db.write(write).addErrback(
            lambda f: log.failure("recording a failed login failed", f))

    def prepare(self) -> defer.Deferred:
        """Pay a first login's one-time costs before anyone logs in: a reader
        connection, the hash lookup, and argon2's first run. That run also makes the
        dummy hash unknown users are checked against, so the first unknown user costs
        one verification like every other login (no one-off timing difference)."""
        return self._in_thread(self._prepare)

    @staticmethod
    def _prepare(conn) -> None:
        get_password_hash(conn, "nobody@invalid")
        passwords.dummy_verify("")

    def _candidates(self, username: str) -> list[str]:
        username = (username or "").strip()
        if "@" not in username and self.default_domain:
            username = f"{username}@{self.default_domain}"
        try:
            return [normalise_user(username)]
        except UserError:
            return []

    def _verify(self, conn, username: str, password: str) -> str | None:
        """On a reader thread: look the user up, verify, upgrade an old hash."""
        for name in self._candidates(username):
            stored = get_password_hash(conn, name)
            if stored is None:
                break
            if not passwords.verify_password(stored, password):
                return None
            if passwords.needs_rehash(stored):
                fresh = passwords.hash_password(password)
                self._on_reactor(self._store_rehash, name, stored, fresh)
            return name
        passwords.dummy_verify(password or "")
        return None

    @staticmethod
    def _on_reactor(fn, *args) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(fn, *args)

    def _store_rehash(self, name: str, stored: str, fresh: str) -> None:
        """Replace an outdated hash (only if nobody changed the password meanwhile)."""
        from sqlalchemy import update

        u = schema.users

        def write(conn):
            conn.execute(update(u).where((u.c.name == name) & (u.c.password_hash == stored))
                         .values(password_hash=fresh))

        self.db.write(write).addErrback(
            lambda f: log.failure("storing a rehashed password failed", f))
