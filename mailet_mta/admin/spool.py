"""The spool: mails being processed, counted by processor state, and listed by state."""

from __future__ import annotations

import json
import time

from sqlalchemy import case, func, select

from ..storage import schema

_S = schema.spool


def states(conn, _config=None) -> list[dict]:
    """Per processor state: mails, the oldest, how many wait for a retry, the next retry."""
    rows = conn.execute(
        select(_S.c.state, func.count(), func.min(_S.c.created),
               func.sum(case((_S.c.tries > 0, 1), else_=0)), func.min(_S.c.not_before))
        .group_by(_S.c.state).order_by(_S.c.state)).all()
    return [{"state": state, "mails": count, "oldest": oldest, "retrying": int(retrying or 0),
             "next_retry": not_before if not_before and not_before > time.time() else None}
            for state, count, oldest, retrying, not_before in rows]


def list_mails(conn, _config, state: str | None = None, limit: int | None = None,
               offset: int = 0) -> list[dict]:
    """The spooled mails (in ``state``), oldest first, without their messages."""
    query = select(_S.c.name, _S.c.state, _S.c.sender, _S.c.recipients, _S.c.tries,
                   _S.c.not_before, _S.c.created, _S.c.owner, _S.c.error_message
                   ).order_by(_S.c.created, _S.c.name)
    if state is not None:
        query = query.where(_S.c.state == state)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [{"name": r.name, "state": r.state, "sender": r.sender,
             "recipients": json.loads(r.recipients), "tries": r.tries,
             "not_before": r.not_before, "created": r.created, "owner": r.owner,
             "error": r.error_message} for r in conn.execute(query)]


def count_mails(conn, _config, state: str | None = None) -> int:
    query = select(func.count()).select_from(_S)
    if state is not None:
        query = query.where(_S.c.state == state)
    return conn.execute(query).scalar() or 0
