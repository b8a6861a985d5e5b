"""Failed logins in the shared database, so every process spends one login budget.

One row per failed password check: the client key (see
:func:`~mailet_mta.storage.auth_throttle.client_key`) and the time. Before a password
is checked, the checking thread reads the key's recent rows (one indexed query) and
replays the throttle's rule on them; a failure is inserted through the database
writer, off the reactor. Rows older than the window plus the block time serve nobody
and are pruned, and the table never holds more than ``max_rows`` rows (the oldest go).

Functions take a Connection and run on a database thread.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from . import schema
from .auth_throttle import replay_failures

__all__ = ["shared_state", "record_failure", "prune"]

_F = schema.auth_failures
# Rows read per key: with the throttle on, a key gets about max_failures rows per
# window from each process before it is blocked; this bounds the read if not.
MAX_ROWS_READ = 1000


def shared_state(conn: Connection, key: str, now: float, throttle) -> tuple[int, float]:
    """``(failures other processes counted in the window, blocked until)`` of ``key``.

    The block is replayed from every process's rows; the count leaves out this
    process's own failures, which its throttle already holds (with its checks in
    flight, which the database cannot know of)."""
    since = now - throttle.window - throttle.block
    rows = conn.execute(select(_F.c.at, _F.c.node)
                        .where((_F.c.client == key) & (_F.c.at > since))
                        .order_by(_F.c.at.desc()).limit(MAX_ROWS_READ)).all()
    rows.reverse()
    _, blocked_until = replay_failures([at for at, _ in rows], now, throttle.max_failures,
                                       throttle.window, throttle.block)
    others = sum(1 for at, node in rows if node != throttle.node and at > now - throttle.window)
    return others, blocked_until


def record_failure(conn: Connection, key: str, at: float, node: str) -> None:
    """Count one failed login of ``key`` at ``at``, seen by process ``node``."""
    conn.execute(insert(_F).values(client=key, at=at, node=node))


def prune(conn: Connection, before: float, max_rows: int) -> int:
    """Delete rows older than ``before``, then the oldest beyond ``max_rows``."""
    removed = conn.execute(delete(_F).where(_F.c.at < before)).rowcount or 0
    excess = conn.execute(select(func.count()).select_from(_F)).scalar() - max_rows
    if excess > 0:
        oldest = select(_F.c.id).order_by(_F.c.at, _F.c.id).limit(excess).scalar_subquery()
        removed += conn.execute(delete(_F).where(_F.c.id.in_(oldest))).rowcount or 0
    return removed
