"""The web mail's login sessions, kept in the database so every process serves them.

A session id is 256 random bits (``secrets.token_urlsafe(32)``) sent only in an
HttpOnly, SameSite=Strict cookie (Secure over TLS). The database keeps its SHA-256,
never the id, with the user and two times (``webmail_sessions``); any worker process,
and any node on the same PostgreSQL, finds a session made by another. Each session's
CSRF token is derived from its id (HMAC-SHA-256 of the id), so it is never stored and
still differs from the id and from every other session's. A session ends at logout
(everywhere at once), after ``idle_timeout`` seconds without a request, or when
``max_sessions`` are held and a new login needs room (the longest idle goes first).

The account's password is checked at login and then forgotten: a session holds the
user's name, never a credential of hers (sending uses the web mail's own internal
credential, :mod:`mailet_mta.webmail_credential`).

The SQL functions take a Connection and run on a database thread;
:class:`SessionStore` runs them off the reactor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, select, update
from twisted.internet import defer

from ..storage import schema

_S = schema.webmail_sessions
MAX_ID_LENGTH = 64


@dataclass
class Session:
    """One logged-in user."""

    id: str = field(repr=False)
    user: str
    last_seen: float = 0.0

    @property
    def csrf(self) -> str:
        """The CSRF token of every form of this session (derived, never stored)."""
        digest = hmac.new(self.id.encode(), b"mailet-mta webmail csrf", hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")

    def csrf_ok(self, token: str | None) -> bool:
        """True when ``token`` is this session's CSRF token (constant-time compare)."""
        return bool(token) and hmac.compare_digest(self.csrf.encode(),
                                                   str(token).encode())


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


# -- SQL (on a database thread) ----------------------------------------------------------
def insert_session(conn, session: Session, max_sessions: int) -> None:
    """Store ``session``; first make room by ending the longest idle ones."""
    held = conn.execute(select(func.count()).select_from(_S)).scalar() or 0
    excess = held - max_sessions + 1
    if excess > 0:
        oldest = select(_S.c.id_hash).order_by(_S.c.last_seen).limit(excess)
        conn.execute(delete(_S).where(_S.c.id_hash.in_(oldest.scalar_subquery())))
    conn.execute(insert(_S).values(id_hash=id_hash(session.id), user=session.user,
                                   created=session.last_seen, last_seen=session.last_seen))


def find_session(conn, session_id: str, now: float, idle_timeout: float) -> Session | None:
    """The live session of ``session_id``, or None (unknown or idle too long)."""
    row = conn.execute(select(_S.c.user, _S.c.last_seen)
                       .where(_S.c.id_hash == id_hash(session_id))).first()
    if row is None or now - row.last_seen > idle_timeout:
        return None
    return Session(session_id, row.user, row.last_seen)


def touch_session(conn, session_id: str, now: float) -> None:
    conn.execute(update(_S).where(_S.c.id_hash == id_hash(session_id))
                 .values(last_seen=now))


def delete_session(conn, session_id: str) -> None:
    conn.execute(delete(_S).where(_S.c.id_hash == id_hash(session_id)))


def delete_idle(conn, before: float) -> int:
    return conn.execute(delete(_S).where(_S.c.last_seen < before)).rowcount or 0


def count_sessions(conn) -> int:
    return conn.execute(select(func.count()).select_from(_S)).scalar() or 0


class SessionStore:
    """Sessions in the database ``db``: every method answers with a Deferred."""

    def __init__(self, db, idle_timeout: float, max_sessions: int, clock=time.time):
        self.db = db
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.clock = clock
        # last_seen is written at most this often per session (a write per request
        # would cost more than the read); idle expiry is exact to within it.
        self.touch_every = min(60.0, idle_timeout / 10)

    def create(self, user: str) -> defer.Deferred:
        """A new session for ``user`` (→ :class:`Session`)."""
        session = Session(secrets.token_urlsafe(32), user, self.clock())
        d = self.db.write(insert_session, session, self.max_sessions)
        return d.addCallback(lambda _: session)

    @defer.inlineCallbacks
    def get(self, session_id: str | None):
        """The live session of ``session_id`` (its idle time restarts), or None."""
        if not session_id or len(session_id) > MAX_ID_LENGTH:
            return None
        now = self.clock()
        session = yield self.db.read(find_session, session_id, now, self.idle_timeout)
        if session is not None and now - session.last_seen >= self.touch_every:
            yield self.db.write(touch_session, session_id, now)
            session.last_seen = now
        return session

    def end(self, session_id: str) -> defer.Deferred:
        """End a session, in every process (logout)."""
        return self.db.write(delete_session, session_id)

    def expire(self) -> defer.Deferred:
        """Drop every session idle longer than ``idle_timeout`` (→ how many went)."""
        return self.db.write(delete_idle, self.clock() - self.idle_timeout)

    def count(self) -> defer.Deferred:
        return self.db.read(count_sessions)
