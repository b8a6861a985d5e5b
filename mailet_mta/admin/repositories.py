"""Mail repositories (``error``, ``relay-denied``, …): list, show, the message itself,
reprocess into a chosen processor, delete one mail, purge by age and count."""

from __future__ import annotations

from sqlalchemy import func, select

from ..storage import repositories as store
from ..storage import schema
from .errors import Invalid, NotFound

_R = schema.repository_mails


def list_repositories(conn, _config) -> list[dict]:
    """``{"name", "mails"}`` of every repository that holds mail, sorted by name."""
    return [{"name": name, "mails": count} for name, count in store.names(conn)]


def summary(mail: store.RepositoryMail) -> dict:
    """One stored mail as JSON-ready data (without its message)."""
    return {"id": mail.id, "repository": mail.repository, "name": mail.name,
            "state": mail.state, "sender": mail.sender, "recipients": mail.recipients,
            "error": mail.error_message, "remote_addr": mail.remote_addr,
            "remote_host": mail.remote_host, "created": mail.created}


def list_mails(conn, _config, repository: str | None, limit: int | None = None,
               offset: int = 0) -> list[dict]:
    """The mails of ``repository`` (or of all), oldest first."""
    query = select(_R).order_by(_R.c.id)
    if repository is not None:
        query = query.where(_R.c.repository == repository)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [summary(store._from_row(row)) for row in conn.execute(query)]


def count_mails(conn, _config, repository: str | None) -> int:
    query = select(func.count()).select_from(_R)
    if repository is not None:
        query = query.where(_R.c.repository == repository)
    return conn.execute(query).scalar() or 0


def _stored(conn, mail_id: int, repository: str | None) -> store.RepositoryMail:
    mail = store.get(conn, mail_id)
    if mail is None or (repository is not None and mail.repository != repository):
        where = f" in repository {repository}" if repository is not None else ""
        raise NotFound(f"no stored mail with id {mail_id}{where} "
                       f"(see: mailet-mta repository list NAME)")
    return mail


def get_mail(conn, _config, mail_id: int, repository: str | None = None) -> dict:
    """One stored mail with its attributes and the size of its message (None when the
    message's blob is missing)."""
    mail = _stored(conn, mail_id, repository)
    size = conn.execute(select(schema.blobs.c.size)
                        .where(schema.blobs.c.id == mail.blob_id)).scalar()
    return {**summary(mail), "attributes": mail.attributes, "size": size}


def message_source(conn, _config, blobs, mail_id: int, repository: str | None = None):
    """(the stored mail's summary, a MessageSource of its message or None when the
    blob is missing). Reading the source is file I/O: off the reactor."""
    mail = _stored(conn, mail_id, repository)
    row = conn.execute(select(schema.blobs.c.size, schema.blobs.c.data)
                       .where(schema.blobs.c.id == mail.blob_id)).first()
    if row is None:
        return summary(mail), None
    data = None if row.data is None else bytes(row.data)
    return summary(mail), blobs.source(mail.blob_id, row.size, data)


def delete_mail(conn, _config, mail_id: int, repository: str | None = None) -> int:
    _stored(conn, mail_id, repository)
    store.remove(conn, mail_id)
    return mail_id


def check_processor(config, state: str | None) -> None:
    """Invalid when ``state`` names no configured processor."""
    processors = config.spoolmanager.processors
    if state is not None and (not state or (processors and state not in processors)):
        raise Invalid(f"processor {state!r}: no such processor in "
                      f"{config.path or 'the configuration'} (processors: "
                      f"{', '.join(sorted(processors))})")


def reprocess(conn, config, repository: str, state: str | None = None,
              mail_id: int | None = None) -> list[dict]:
    """Send the mails of ``repository`` (or the one ``mail_id``) back to the spool, in
    ``state`` or where each came from; → ``{"name", "state"}`` of each moved mail."""
    check_processor(config, state)
    if mail_id is not None:
        _stored(conn, mail_id, repository)
    moved = store.reprocess(conn, repository, state, mail_id)
    if not moved:
        raise NotFound(f"nothing to reprocess in repository {repository!r}"
                       + (f" with id {mail_id}" if mail_id is not None else ""))
    return [{"name": name, "state": restart} for name, restart in moved]


def purge(conn, _config, repository: str, older_than: float | None = None,
          keep: int | None = None) -> int:
    """Delete the mails of ``repository`` stored longer than ``older_than`` seconds ago
    and all but its newest ``keep``; → how many went."""
    if older_than is None and keep is None:
        raise Invalid("say what to purge: an age (older than) and/or how many of the "
                      "newest mails to keep")
    if (older_than is not None and older_than <= 0) or (keep is not None and keep < 0):
        raise Invalid("the age must be more than 0 and the count to keep 0 or more")
    return store.purge(conn, repository, older_than, keep)
