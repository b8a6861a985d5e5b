"""SQL for the ``outgoing`` table: enqueue, claim with a lease, record, reschedule.

Every function takes a SQLAlchemy ``Connection`` and runs inside the caller's
transaction (``Database.write`` / ``Database.read`` on their threads, or the CLI).

A row is one mail for one destination: all its recipients in one domain (or all of them
when a gateway is set). ``recipients`` is a JSON list of
``{address, status: pending|sent|failed, code, error, bounced}``; a recipient's outcome
is written as soon as it is known, so a row claimed again after a crash never sends to
a recipient that already got 250.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from ..storage import schema
from ..storage.mail_rows import attributes_json

T = schema.outgoing

PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass
class QueueEntry:
    """One ``outgoing`` row, decoded."""

    id: int
    queue: str
    mail_name: str
    domain: str
    sender: str | None
    recipients: list[dict]
    attributes: dict[str, Any]
    options: dict[str, Any]
    blob_id: str
    attempts: int
    dns_failures: int
    next_attempt: float
    last_error: str | None
    created: float
    owner: str | None = None
    lease_until: float | None = None
    blob_size: int | None = field(default=None, repr=False)
    blob_data: bytes | None = field(default=None, repr=False)

    def pending(self) -> list[dict]:
        return [r for r in self.recipients if r["status"] == PENDING]

    def to_json(self) -> dict:
        """A JSON-ready view for ``mailet-mta queue`` (no gateway password)."""
        opts = dict(self.options)
        if opts.get("gatewayPassword"):
            opts["gatewayPassword"] = "***"
        return {"id": self.id, "queue": self.queue, "mail": self.mail_name,
                "domain": self.domain, "sender": self.sender or "",
                "recipients": self.recipients, "attempts": self.attempts,
                "dns_failures": self.dns_failures, "next_attempt": self.next_attempt,
                "last_error": self.last_error, "created": self.created,
                "owner": self.owner, "lease_until": self.lease_until, "options": opts}


def _decode(row) -> QueueEntry:
    m = row._mapping
    return QueueEntry(
        id=m["id"], queue=m["queue"], mail_name=m["mail_name"], domain=m["domain"],
        sender=m["sender"], recipients=json.loads(m["recipients"]),
        attributes=json.loads(m["attributes"]), options=json.loads(m["options"]),
        blob_id=m["blob_id"], attempts=m["attempts"], dns_failures=m["dns_failures"],
        next_attempt=m["next_attempt"], last_error=m["last_error"], created=m["created"],
        owner=m["owner"], lease_until=m["lease_until"],
        blob_size=m.get("size"), blob_data=m.get("data"))


def group_recipients(recipients: Iterable, gateway: bool) -> dict[str, list[str]]:
    """Recipient addresses by destination domain (one group when ``gateway``)."""
    groups: dict[str, list[str]] = {}
    for rcpt in recipients:
        key = "*" if gateway else rcpt.domain
        address = str(rcpt)
        if address not in groups.setdefault(key, []):
            groups[key].append(address)
    return groups


def enqueue(conn: Connection, mail, blob_id: str, queue: str, options: dict,
            now: float | None = None) -> list[int]:
    """Insert one row per destination domain for ``mail``; returns the new row ids."""
    now = time.time() if now is None else now
    options = dict(options or {})
    gateway = bool(options.get("gateways"))
    sender = None if mail.sender is None else str(mail.sender)
    attributes = attributes_json(mail.attributes)
    options_json = json.dumps(options)
    ids = []
    for domain, addresses in group_recipients(mail.recipients, gateway).items():
        recipients = [{"address": a, "status": PENDING, "code": None, "error": None}
                      for a in addresses]
        result = conn.execute(insert(T).values(
            queue=queue, mail_name=mail.name, domain=domain, sender=sender,
            recipients=json.dumps(recipients), attributes=attributes, options=options_json,
            blob_id=blob_id, attempts=0, dns_failures=0, next_attempt=now, last_error=None,
            created=now, owner=None, lease_until=None))
        ids.append(result.inserted_primary_key[0])
    return ids


def _claimable(now: float):
    return and_(T.c.next_attempt <= now,
                or_(T.c.owner.is_(None), T.c.lease_until < now))


def claim_due(conn: Connection, owner: str, now: float, lease: float,
              limit: int) -> list[QueueEntry]:
    """Take up to ``limit`` due rows (free, or whose lease expired) for ``owner``.

    Returns them with their blob's size and inline data. On PostgreSQL the rows are
    locked with ``FOR UPDATE SKIP LOCKED`` so several nodes never claim the same row.
    """
    ids = conn.execute(select(T.c.id).where(_claimable(now)).order_by(T.c.next_attempt)
                       .limit(limit).with_for_update(skip_locked=True)).scalars().all()
    if not ids:
        return []
    conn.execute(update(T).where(T.c.id.in_(ids)).values(owner=owner,
                                                         lease_until=now + lease))
    b = schema.blobs
    rows = conn.execute(select(T, b.c.size, b.c.data).select_from(
        T.outerjoin(b, b.c.id == T.c.blob_id)).where(T.c.id.in_(ids))
        .order_by(T.c.next_attempt, T.c.id)).all()
    return [_decode(r) for r in rows]


def record_recipients(conn: Connection, entry_id: int, owner: str, recipients: list[dict],
                      lease_until: float | None = None) -> bool:
    """Store the recipients' outcomes (and extend the lease); False if the row is gone
    or another node owns it now."""
    values: dict[str, Any] = {"recipients": json.dumps(recipients)}
    if lease_until is not None:
        values["lease_until"] = lease_until
    res = conn.execute(update(T).where(T.c.id == entry_id, T.c.owner == owner)
                       .values(**values))
    return res.rowcount == 1


def reschedule(conn: Connection, entry: QueueEntry, next_attempt: float) -> None:
    """Release the row for its next attempt, with its counters and outcomes."""
    conn.execute(update(T).where(T.c.id == entry.id).values(
        recipients=json.dumps(entry.recipients), attempts=entry.attempts,
        dns_failures=entry.dns_failures, next_attempt=next_attempt,
        last_error=entry.last_error, owner=None, lease_until=None))


def remove(conn: Connection, entry_id: int) -> bool:
    """Delete a row; True when it existed."""
    return conn.execute(delete(T).where(T.c.id == entry_id)).rowcount == 1


# -- administration (mailet-mta queue) --------------------------------------------------
def list_entries(conn: Connection, queue: str | None = None) -> list[QueueEntry]:
    query = select(T).order_by(T.c.next_attempt, T.c.id)
    if queue:
        query = query.where(T.c.queue == queue)
    return [_decode(r) for r in conn.execute(query)]


def get_entry(conn: Connection, entry_id: int) -> QueueEntry | None:
    row = conn.execute(select(T).where(T.c.id == entry_id)).first()
    return _decode(row) if row is not None else None


def retry_now(conn: Connection, entry_id: int | None = None,
              now: float | None = None) -> int:
    """Make one row (or all rows when ``entry_id`` is None) due now; returns how many."""
    now = time.time() if now is None else now
    query = update(T).values(next_attempt=now)
    if entry_id is not None:
        query = query.where(T.c.id == entry_id)
    return conn.execute(query).rowcount
