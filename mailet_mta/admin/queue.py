"""The outgoing queue (RemoteDelivery's mails waiting for their next hop): list by
destination, show, retry, delete, flush. Retrying only makes an entry due now; the
running server picks it up at its next poll."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from ..delivery import queue_store
from ..storage import schema
from .errors import NotFound

_T = schema.outgoing


def _filtered(query, queue: str | None, destination: str | None):
    if queue:
        query = query.where(_T.c.queue == queue)
    if destination:
        query = query.where(_T.c.domain == destination.strip().lower())
    return query


def list_entries(conn, _config, queue: str | None = None, destination: str | None = None,
                 limit: int | None = None, offset: int = 0) -> list[dict]:
    """Entries (of one queue, of one destination domain), soonest attempt first."""
    query = _filtered(select(_T).order_by(_T.c.next_attempt, _T.c.id), queue, destination)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [queue_store._decode(row).to_json() for row in conn.execute(query)]


def count_entries(conn, _config, queue: str | None = None,
                  destination: str | None = None) -> int:
    return conn.execute(_filtered(select(func.count()).select_from(_T), queue, destination)
                        ).scalar() or 0


def destinations(conn, _config=None) -> list[dict]:
    """One group per (queue, destination domain), soonest next attempt first: mails,
    recipients still pending, most attempts, the next attempt and the last error."""
    groups: dict[tuple[str, str], dict] = {}
    query = select(_T.c.queue, _T.c.domain, _T.c.recipients, _T.c.attempts,
                   _T.c.next_attempt, _T.c.last_error, _T.c.created)
    for queue, domain, recipients, attempts, next_attempt, last_error, created in \
            conn.execute(query.order_by(_T.c.created)):
        group = groups.setdefault((queue, domain), {
            "queue": queue, "destination": domain, "mails": 0, "pending_recipients": 0,
            "attempts": 0, "next_attempt": None, "last_error": None, "oldest": created})
        group["mails"] += 1
        group["pending_recipients"] += _pending(recipients)
        group["attempts"] = max(group["attempts"], attempts or 0)
        if group["next_attempt"] is None or next_attempt < group["next_attempt"]:
            group["next_attempt"] = next_attempt
        if last_error:
            group["last_error"] = last_error      # rows come oldest first: the newest wins
    return sorted(groups.values(), key=lambda g: (g["next_attempt"] or 0, g["destination"]))


def _pending(recipients_json: str) -> int:
    try:
        recipients = json.loads(recipients_json)
    except ValueError:
        return 0
    return sum(1 for r in recipients
               if not isinstance(r, dict) or r.get("status", "pending") == "pending")


def get_entries(conn, _config, key: str | int) -> list[dict]:
    """The entries named by ``key``: a row number, or every entry of the mail so named
    (one per destination domain, as in the log's id= and the reply 'queued as NAME')."""
    key = str(key).strip()
    if key.isdigit():
        entry = queue_store.get_entry(conn, int(key))
        found = [entry] if entry is not None else []
    else:
        ids = conn.execute(select(_T.c.id).where(_T.c.mail_name == key)
                           .order_by(_T.c.id)).scalars().all()
        found = [e for e in (queue_store.get_entry(conn, i) for i in ids) if e is not None]
    if not found:
        raise NotFound(f"no queue entry with id or mail name {key!r} "
                       f"(see: mailet-mta queue list)")
    return [e.to_json() for e in found]


def retry(conn, _config, entry_id: int) -> int:
    """Make entry ``entry_id`` due now."""
    if queue_store.retry_now(conn, entry_id) == 0:
        raise NotFound(f"no queue entry {entry_id} (see: mailet-mta queue list)")
    return 1


def flush(conn, _config, queue: str | None = None, destination: str | None = None) -> int:
    """Make every entry (of one queue, of one destination) due now; → how many."""
    import time

    query = _filtered(_T.update().values(next_attempt=time.time()), queue, destination)
    return conn.execute(query).rowcount


def delete(conn, _config, entry_id: int) -> int:
    """Remove an entry without delivering or bouncing it."""
    if not queue_store.remove(conn, entry_id):
        raise NotFound(f"no queue entry {entry_id} (see: mailet-mta queue list)")
    return entry_id
