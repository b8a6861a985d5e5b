"""The durable spool: Mail ↔ ``spool`` rows, and the SQL the spool manager runs.

Every function taking ``conn`` runs inside a transaction the caller owns (normally a
batch of the database writer), so accepting a mail, or finishing one together with all
it caused (mailbox rows, queue entries, new mails), is atomic.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import and_, bindparam, delete, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from ..address import MailAddress
from ..mail import Mail
from ..storage import leases, repositories, schema
from ..storage.blobs import BlobStore
from ..storage.db import BatchCheck, execute
from ..storage.mail_rows import envelope_row

S = schema.spool

# Prepared statements: the writer groups equal statements of a batch into one executemany.
INSERT_SPOOL = insert(S)
_DELETE_SPOOL = delete(S).where(S.c.name == bindparam("mail_name"))
_FINISH_OWNED = (delete(S).where(and_(S.c.owner == bindparam("owner"),
                                      S.c.name.in_(bindparam("names", expanding=True))))
                 .returning(S.c.name))
# PostgreSQL, in the writer's flight (nothing read before the COMMIT): the same removal,
# failing, and with it the transaction, unless every mail named was this node's.
_FINISH_OWNED_OR_FAIL = text("""
WITH gone AS (DELETE FROM spool WHERE owner = :owner AND name = ANY(:names) RETURNING name)
SELECT CAST(CASE WHEN count(*) = :wanted THEN '1' ELSE 'lease lost' END AS integer)
FROM gone""")


def _address(text: str | None) -> MailAddress | None:
    return MailAddress.parse(text) if text else None


def mail_to_row(mail: Mail, blob_id: str, owner: str | None, lease_until: float | None,
                not_before: float = 0.0, tries: int = 0) -> dict:
    now = time.time()
    return dict(
        envelope_row(mail), helo=mail.helo, auth_user=mail.auth_user, blob_id=blob_id,
        tries=tries, not_before=not_before, created=now,
        last_updated=mail.last_updated or now, owner=owner, lease_until=lease_until)


def row_to_mail(row, source) -> Mail:
    mail = Mail(row.name, sender=_address(row.sender),
                recipients=[MailAddress.parse(r) for r in json.loads(row.recipients)],
                message=source, state=row.state, attributes=json.loads(row.attributes),
                error_message=row.error_message, remote_addr=row.remote_addr,
                remote_host=row.remote_host, helo=row.helo, auth_user=row.auth_user,
                last_updated=row.last_updated)
    mail.spool_tries = row.tries
    return mail


def insert_mail(conn: Connection, mail: Mail, blob_id: str, owner: str | None = None,
                lease_until: float | None = None, not_before: float = 0.0) -> None:
    """Add ``mail`` to the spool (its blob row must exist or be added in this transaction)."""
    execute(conn, INSERT_SPOOL, mail_to_row(mail, blob_id, owner, lease_until, not_before))


def delete_mail(conn: Connection, name: str) -> None:
    execute(conn, _DELETE_SPOOL, {"mail_name": name})


LeaseLost = leases.LeaseLost  # the mail is no longer this node's: another node took it


class FinishOwned(BatchCheck):
    """Remove finished mails, provided ``owner`` (this node) still holds them: one
    ``DELETE … RETURNING`` for every mail a batch finishes. A mail another node took
    over is not removed, and its run's results fail with LeaseLost (nothing of them
    commits)."""

    def __init__(self, owner: str):
        self.owner = owner

    def run(self, conn: Connection, keys: list) -> set:
        rows = conn.execute(_FINISH_OWNED, {"owner": self.owner, "names": keys})
        return {name for (name,) in rows}

    def failure(self, key) -> Exception:
        return LeaseLost(key)

    def statement(self, keys: list) -> tuple:
        names = sorted(set(keys))
        return (_FINISH_OWNED_OR_FAIL,
                {"owner": self.owner, "names": names, "wanted": len(names)})


def accept_statements(mail: Mail, blob, owner: str, lease_until: float) -> list:
    """The writes that put a received mail and its blob into the spool."""
    return [BlobStore.row_statement(blob),
            (INSERT_SPOOL, mail_to_row(mail, blob.id, owner, lease_until))]


def record_failure(conn: Connection, name: str, retry_at: float, error: str) -> int:
    """Count a failed processing run; release the lease until ``retry_at``. → tries."""
    conn.execute(update(S).where(S.c.name == name).values(
        tries=S.c.tries + 1, not_before=retry_at, error_message=error, owner=None,
        lease_until=None, last_updated=time.time()))
    return conn.execute(select(S.c.tries).where(S.c.name == name)).scalar() or 0


def claim(conn: Connection, owner: str, lease_seconds: float, limit: int) -> list[str]:
    """Take up to ``limit`` due mails that no live node holds; → their names."""
    now = time.time()
    free = or_(S.c.owner.is_(None), S.c.lease_until < now)
    query = (select(S.c.name).where(and_(free, S.c.not_before <= now))
             .order_by(S.c.created).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    names = list(conn.execute(query).scalars())
    if names:
        conn.execute(update(S).where(and_(S.c.name.in_(names), free))
                     .values(owner=owner, lease_until=now + lease_seconds))
    return names


def renew_leases(conn: Connection, owner: str, lease_seconds: float,
                 names: list[str]) -> int:
    """Extend the leases ``owner`` holds on the mails ``names`` (those in flight);
    → how many rows were extended."""
    until = time.time() + lease_seconds
    renewed = 0
    for start in range(0, len(names), 500):
        res = conn.execute(update(S).where(and_(S.c.owner == owner,
                                                S.c.name.in_(names[start:start + 500])))
                           .values(lease_until=until))
        renewed += res.rowcount
    return renewed


def release_all(conn: Connection, owner: str) -> None:
    """Give up every lease ``owner`` holds (a clean stop)."""
    conn.execute(update(S).where(S.c.owner == owner).values(owner=None, lease_until=None))


def release_every_lease(conn: Connection) -> None:
    """Give up every lease of every node (a SQLite spool has one process)."""
    conn.execute(update(S).values(owner=None, lease_until=None))


def remove_statements(name: str) -> list:
    """The writes that take the finished mail ``name`` out of the spool."""
    return [(_DELETE_SPOOL, {"mail_name": name})]


def load_mails(conn: Connection, names: list[str], blobs: BlobStore) -> list[Mail]:
    """The Mails for ``names`` with their message sources (inline blobs in memory)."""
    out = []
    for start in range(0, len(names), 500):
        rows = conn.execute(select(S).where(S.c.name.in_(names[start:start + 500]))).all()
        sources = blobs.load_sources(conn, [r.blob_id for r in rows])
        for row in rows:
            source = sources.get(row.blob_id)
            if source is None:
                continue
            out.append(row_to_mail(row, source))
    return out


def move_to_repository(conn: Connection, mail: Mail, blob_id: str, repository: str) -> None:
    """Keep ``mail`` in ``repository`` and take it out of the spool (one transaction)."""
    repositories.store(conn, repository, mail, blob_id)
    delete_mail(conn, mail.name)
