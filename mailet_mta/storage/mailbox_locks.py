"""One POP3 session per mailbox, across processes: leases in ``mailbox_locks``.

A session takes the lease when it logs in, refreshes it while it lives and releases
it when it ends. A lease whose holder died (``kill -9``, a lost machine) expires and
the next login takes it over; no process ever waits on a lock.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import schema

__all__ = ["acquire_lock", "refresh_lock", "release_lock"]

_L = schema.mailbox_locks


def acquire_lock(conn: Connection, user: str, owner: str, lease_seconds: float,
                 now: float | None = None) -> bool:
    """Take the lease on ``user``'s mailbox; False when another live session holds it."""
    now = time.time() if now is None else now
    taken = conn.execute(update(_L).where((_L.c.user == user) & (
        (_L.c.lease_until < now) | (_L.c.owner == owner)))
        .values(owner=owner, lease_until=now + lease_seconds)).rowcount
    if taken:
        return True
    savepoint = conn.begin_nested()
    try:
        conn.execute(insert(_L).values(user=user, owner=owner, lease_until=now + lease_seconds))
        savepoint.commit()
        return True
    except IntegrityError:          # a live lease of another session
        savepoint.rollback()
        return False


def refresh_lock(conn: Connection, user: str, owner: str, lease_seconds: float,
                 now: float | None = None) -> bool:
    """Extend our lease; False when it was lost (expired and taken over)."""
    now = time.time() if now is None else now
    return conn.execute(update(_L).where((_L.c.user == user) & (_L.c.owner == owner))
                        .values(lease_until=now + lease_seconds)).rowcount == 1


def release_lock(conn: Connection, user: str, owner: str) -> None:
    conn.execute(delete(_L).where((_L.c.user == user) & (_L.c.owner == owner)))
