"""Named mail repositories (``error``, ``relay-denied``, …): the ``repository_mails`` table.

A repository keeps whole mails — envelope, attributes, error message and a reference
to the (shared) message blob — for an operator to inspect, remove, send back into
the spool (:func:`reprocess`) or purge (:func:`purge`, and :func:`apply_retention`
for the configured bounds). A purged mail's blob goes with the next blob sweep.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from ..api import ATTR_ERROR_PROCESSOR
from . import schema
from .mail_rows import attributes_json, envelope_row, recipients_json

__all__ = ["RepositoryMail", "store", "list_mails", "get", "remove", "names", "reprocess",
           "restart_state", "purge", "apply_retention"]

_R = schema.repository_mails


@dataclass
class RepositoryMail:
    """One stored mail: its envelope and where its message is."""

    id: int
    repository: str
    name: str
    state: str
    sender: str | None
    recipients: list[str]
    attributes: dict = field(default_factory=dict)
    error_message: str | None = None
    remote_addr: str = ""
    remote_host: str = ""
    blob_id: str = ""
    created: float = 0.0


def _from_row(row) -> RepositoryMail:
    return RepositoryMail(
        id=row.id, repository=row.repository, name=row.name, state=row.state,
        sender=row.sender, recipients=json.loads(row.recipients),
        attributes=json.loads(row.attributes), error_message=row.error_message,
        remote_addr=row.remote_addr, remote_host=row.remote_host, blob_id=row.blob_id,
        created=row.created)


def store(conn: Connection, repository: str, mail, blob_id: str) -> int:
    """Keep ``mail`` (a Mail) in ``repository`` with its message in blob ``blob_id``; → id."""
    row = envelope_row(mail)
    row.update(remote_addr=mail.remote_addr or "", remote_host=mail.remote_host or "")
    res = conn.execute(insert(_R).values(repository=repository, blob_id=blob_id,
                                         created=time.time(), **row))
    return res.inserted_primary_key[0]


def list_mails(conn: Connection, repository: str | None = None,
               limit: int | None = None) -> list[RepositoryMail]:
    """Mails of one repository (or all), oldest first."""
    query = select(_R).order_by(_R.c.id)
    if repository is not None:
        query = query.where(_R.c.repository == repository)
    if limit is not None:
        query = query.limit(limit)
    return [_from_row(row) for row in conn.execute(query)]


def get(conn: Connection, mail_id: int) -> RepositoryMail | None:
    row = conn.execute(select(_R).where(_R.c.id == mail_id)).first()
    return _from_row(row) if row else None


def remove(conn: Connection, mail_id: int) -> bool:
    """Delete one stored mail; False when there was none with that id."""
    return conn.execute(delete(_R).where(_R.c.id == mail_id)).rowcount == 1


def names(conn: Connection) -> list[tuple[str, int]]:
    """[(repository name, mail count)] sorted by name."""
    rows = conn.execute(select(_R.c.repository, func.count()).group_by(_R.c.repository)
                        .order_by(_R.c.repository))
    return [(name, count) for name, count in rows]


def restart_state(mail: RepositoryMail, state: str | None = None) -> str:
    """Where a reprocessed mail starts: ``state`` when given; for a mail stored from the
    ``error`` processor, the processor it failed in (kept as the attribute
    ``mailet_mta.error.processor``) or else ``root`` — never ``error`` again, which would
    store it straight back; otherwise the state it was stored with."""
    if state:
        return state
    if mail.state in ("error", "ghost", ""):
        before = mail.attributes.get(ATTR_ERROR_PROCESSOR)
        return before if isinstance(before, str) and before not in ("error", "ghost",
                                                                      "") else "root"
    return mail.state


def reprocess(conn: Connection, repository: str, state: str | None = None,
              mail_id: int | None = None) -> list[tuple[str, str]]:
    """Move the mails of ``repository`` back into the spool; → (spool name, state) each.

    Each becomes an unowned spool row in :func:`restart_state` with ``tries`` 0, so a
    running server picks it up when it next polls the spool. The repository rows are
    removed in the same transaction.
    """
    from ..mail import new_mail_name

    query = select(_R).where(_R.c.repository == repository).order_by(_R.c.id)
    if mail_id is not None:
        query = query.where(_R.c.id == mail_id)
    stored = [_from_row(row) for row in conn.execute(query)]
    sp = schema.spool
    now = time.time()
    out = []
    for mail in stored:
        name = mail.name
        if conn.execute(select(sp.c.name).where(sp.c.name == name)).first() is not None:
            name = new_mail_name()
        restart = restart_state(mail, state)
        conn.execute(insert(sp).values(
            name=name, state=restart, sender=mail.sender,
            recipients=recipients_json(mail.recipients),
            attributes=attributes_json(mail.attributes),
            error_message=mail.error_message, remote_addr=mail.remote_addr,
            remote_host=mail.remote_host, helo=None, auth_user=None, blob_id=mail.blob_id,
            tries=0, not_before=0.0, created=now, last_updated=now, owner=None,
            lease_until=None))
        conn.execute(delete(_R).where(_R.c.id == mail.id))
        out.append((name, restart))
    return out


def purge(conn: Connection, repository: str, older_than: float | None = None,
          keep: int | None = None, now: float | None = None) -> int:
    """Delete the mails of ``repository`` stored more than ``older_than`` seconds ago and
    all but its newest ``keep`` (0 keeps none); → how many were deleted. None means
    no bound of that kind."""
    where = _R.c.repository == repository
    removed = 0
    if older_than is not None:
        cutoff = (time.time() if now is None else now) - older_than
        removed += conn.execute(delete(_R).where(where & (_R.c.created < cutoff))).rowcount
    if keep is not None:
        newest_gone = conn.execute(select(_R.c.id).where(where).order_by(_R.c.id.desc())
                                   .offset(keep).limit(1)).scalar()
        if newest_gone is not None:
            removed += conn.execute(delete(_R).where(where & (_R.c.id <= newest_gone))
                                    ).rowcount
    return removed


def apply_retention(conn: Connection, rules: dict) -> dict[str, int]:
    """Enforce ``{repository: rule}`` (rules with ``max_age``/``max_mails``, 0 = no bound);
    → {repository: mails purged} for those that lost any."""
    purged = {}
    for name, rule in rules.items():
        if not rule.max_age and not rule.max_mails:
            continue
        count = purge(conn, name, rule.max_age or None, rule.max_mails or None)
        if count:
            purged[name] = count
    return purged
