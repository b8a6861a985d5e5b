"""Copying and moving messages between a user's folders (IMAP COPY, MOVE) and
appending new ones (APPEND).

A copy is a new message row pointing at the same blob as the original, with the
original's trace prefix, flags and internal date: bodies are never duplicated. The
blob stays while any row (message, spool, repository, outgoing queue) refers to it:
:meth:`~.blobs.BlobStore.sweep` deletes only unreferenced blobs, so removing one copy
leaves the others readable. The destination's UIDs are taken in one step, in the
order the ids were given (RFC 4315 COPYUID), with one new modseq for the folder.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from ..mailstore import NoSuchFolder, OverQuota, canonical_folder
from . import schema
from .blobs import BlobRef, BlobStore
from .folder_changes import TOMBSTONE_LIMIT, announce, remove_messages
from .mailboxes import QuotaExceeded, quota_usage, store_message

__all__ = ["copy_messages", "append_message"]

_mb, _msg, _users = schema.mailboxes, schema.messages, schema.users
_IN_CHUNK = 500


def _folder(conn: Connection, user: str, folder: str) -> tuple[int, int]:
    """(mailbox id, uid_validity) of (user, folder); NoSuchFolder when missing."""
    row = conn.execute(select(_mb.c.id, _mb.c.uid_validity).where(
        (_mb.c.user == user) & (_mb.c.name == canonical_folder(folder)))).first()
    if row is None:
        raise NoSuchFolder(f"{user} has no folder {folder!r}")
    return row[0], row[1]


def _source_rows(conn: Connection, user: str, ids: list[int], box: int | None) -> list:
    """(id, blob_id, prefix, size, internal_date, flags) of those of ``ids`` that are
    ``user``'s (and in ``box`` when given), in the order of ``ids``."""
    found = {}
    for start in range(0, len(ids), _IN_CHUNK):
        query = (select(_msg.c.id, _msg.c.blob_id, _msg.c.prefix, _msg.c.size,
                        _msg.c.internal_date, _msg.c.flags)
                 .select_from(_msg.join(_mb, _msg.c.mailbox_id == _mb.c.id))
                 .where(_msg.c.id.in_(ids[start:start + _IN_CHUNK]) & (_mb.c.user == user)))
        if box is not None:
            query = query.where(_msg.c.mailbox_id == box)
        found.update((row[0], tuple(row)) for row in conn.execute(query))
    return [found[mid] for mid in ids if mid in found]


def _check_quota(conn: Connection, user: str, adding: int) -> None:
    limit = conn.execute(select(_users.c.quota).where(_users.c.name == user)).scalar()
    if limit is None:
        return
    usage = quota_usage(conn, user)
    if usage + adding > limit:
        raise OverQuota(user, usage, limit, adding)


def copy_messages(conn: Connection, user: str, message_ids, dest: str,
                  source: str | None = None,
                  tombstone_limit: int = TOMBSTONE_LIMIT) -> tuple[int, list]:
    """Copy ``user``'s messages into ``dest``; with ``source`` (a move) only those in
    that folder, which are then expunged in the same transaction, and no quota
    check (a move adds nothing). → ``(uid_validity, [(source id, new uid), …])``."""
    dest_box, validity = _folder(conn, user, dest)
    source_box = _folder(conn, user, source)[0] if source is not None else None
    ids = list(dict.fromkeys(message_ids))
    rows = _source_rows(conn, user, ids, source_box)
    if not rows:
        return validity, []
    if source is None:
        _check_quota(conn, user, sum(row[3] for row in rows))
    conn.execute(update(_mb).where(_mb.c.id == dest_box).values(
        uid_next=_mb.c.uid_next + len(rows), highest_modseq=_mb.c.highest_modseq + 1,
        message_count=_mb.c.message_count + len(rows)))
    uid_next, modseq = conn.execute(select(_mb.c.uid_next, _mb.c.highest_modseq)
                                    .where(_mb.c.id == dest_box)).one()
    first = uid_next - len(rows)
    conn.execute(_msg.insert(), [
        {"mailbox_id": dest_box, "uid": first + i, "uidl": uuid.uuid4().hex,
         "blob_id": blob_id, "prefix": prefix, "size": size, "internal_date": date,
         "flags": flags, "deleted": False, "modseq": modseq}
        for i, (_mid, blob_id, prefix, size, date, flags) in enumerate(rows)])
    announce(conn, dest_box)
    if source_box is not None:
        remove_messages(conn, [row[0] for row in rows], source_box, tombstone_limit)
    return validity, [(row[0], first + i) for i, row in enumerate(rows)]


def append_message(conn: Connection, user: str, folder: str, ref: BlobRef, flags: str,
                   internal_date: float | None) -> tuple[int, int]:
    """Record the blob ``ref`` and a message of it in (user, folder), which must
    exist. → ``(uid_validity, uid)``; NoSuchFolder, OverQuota."""
    box, validity = _folder(conn, user, folder)
    BlobStore.insert_row(conn, ref)
    try:
        uid = store_message(conn, user, canonical_folder(folder), ref.id, b"", ref.size,
                            internal_date, flags, create=False)
    except QuotaExceeded as exc:
        raise OverQuota(user, exc.usage, exc.quota, exc.size) from None
    return validity, uid
