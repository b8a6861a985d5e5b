"""The web mail's login sessions, held in this process's memory.

A session id is 256 random bits (``secrets.token_urlsafe(32)``) sent only in an
HttpOnly, SameSite=Strict cookie (Secure over TLS); the browser never sees anything
else of the session. Each session has its own CSRF token (another 256 bits) that every
POST form carries. A session ends at logout, after ``idle_timeout`` seconds without a
request, or when ``max_sessions`` are held and a new login needs room (the longest idle
goes first). The account's password stays in the session, in memory only, because
sending goes through the submission listener as that user (see docs/webmail.md).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class Session:
    """One logged-in user."""

    id: str = field(repr=False)
    user: str
    csrf: str = field(repr=False)
    last_seen: float = 0.0

    def csrf_ok(self, token: str | None) -> bool:
        """True when ``token`` is this session's CSRF token (constant-time compare)."""
        return bool(token) and hmac.compare_digest(self.csrf.encode(),
                                                   str(token).encode())


class SessionStore:
    """Sessions by id, least recently used first, bounded by ``max_sessions``."""

    def __init__(self, idle_timeout: float, max_sessions: int, clock=time.monotonic):
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: str) -> Session:
        """A new session for ``user``; the longest idle one goes when the store is
        full."""
        self.expire()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32),
                          self.clock())
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id`` (its idle time restarts), or None."""
        if not session_id or len(session_id) > 64:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_timeout:
            del self._sessions[session_id]
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str) -> None:
        """Forget a session (logout)."""
        self._sessions.pop(session_id, None)

    def expire(self) -> int:
        """Drop every session idle longer than ``idle_timeout``; how many went."""
        limit = self.clock() - self.idle_timeout
        gone = 0
        while self._sessions:
            sid, oldest = next(iter(self._sessions.items()))
            if oldest.last_seen >= limit:
                break
            del self._sessions[sid]
            gone += 1
        return gone
