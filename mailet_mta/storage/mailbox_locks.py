"""One POP3 session per mailbox, across processes: leases in ``mailbox_locks``.

A session takes the lease when it logs in, refreshes it while it lives and releases
it when it ends. A lease whose holder died (``kill -9``, a lost machine) expires and
the next login takes it over; no process ever waits on a lock.
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import schema

__all__ = ["acquire_lock", "refresh_lock", "release_lock"]

_L = schema.mailbox_locks


def _take_lease(dialect_insert):
    """Insert the lease, or take over an expired (or our own) one: a row comes back
    only when the lease is now ours."""
    stmt = dialect_insert(_L).values(user=bindparam("b_user"), owner=bindparam("b_owner"),
                                     lease_until=bindparam("b_until"))
    return (stmt.on_conflict_do_update(
        index_elements=[_L.c.user],
        set_={"owner": stmt.excluded.owner, "lease_until": stmt.excluded.lease_until},
        where=(_L.c.lease_until < bindparam("b_now"))
        | (_L.c.owner == bindparam("b_owner")))
        .returning(_L.c.user))


# One statement (a login waits for it) where the database has INSERT … ON CONFLICT …
# RETURNING; elsewhere an UPDATE, then an INSERT in a savepoint.
_TAKE_LEASE = {"sqlite": _take_lease(sqlite_insert),
               "postgresql": _take_lease(postgresql_insert)}


def acquire_lock(conn: Connection, user: str, owner: str, lease_seconds: float,
                 now: float | None = None) -> bool:
    """Take the lease on ``user``'s mailbox; False when another live session holds it."""
    now = time.time() if now is None else now
    take = _TAKE_LEASE.get(conn.dialect.name)
    if take is not None and conn.dialect.insert_returning:
        return conn.execute(take, {"b_user": user, "b_owner": owner, "b_now": now,
                                   "b_until": now + lease_seconds}).first() is not None
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
