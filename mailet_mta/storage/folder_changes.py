"""Modseqs, tombstones and flag changes of mailbox messages (IMAP CONDSTORE/QRESYNC).

Every change of a folder raises its ``highest_modseq`` (the row's UPDATE also takes
its lock on PostgreSQL) and stamps the changed message rows, or the tombstones of the
expunged ones, with the new value (RFC 7162 §3.1). So "what changed since modseq N"
is two indexed range reads: messages and tombstones of the folder with a modseq above
N. Tombstones are bounded per folder: past ``tombstone_limit`` the oldest are purged
and the folder's ``vanished_horizon`` records up to where, so a question about an
older state is answered "unknown" (the client reads the whole folder again) instead
of wrongly "nothing was expunged".

On PostgreSQL each change also sends ``NOTIFY mailet_mta_folders, '<mailbox id>'``
(delivered at commit) for the processes that watch the folder.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import bindparam, delete, func, insert, literal, select, update
from sqlalchemy.engine import Connection

from . import schema
from .db import execute, fetch_chunks, fetch_one

__all__ = ["NOTIFY_CHANNEL", "TOMBSTONE_LIMIT", "next_modseq", "announce", "tombstone",
           "snapshot_row_chunks", "changed_rows", "expunged_since", "folder_head",
           "change_flags", "remove_messages"]

NOTIFY_CHANNEL = "mailet_mta_folders"
TOMBSTONE_LIMIT = 20_000      # tombstones kept per folder (the newest)
_IN_CHUNK = 500

_mb, _msg, _gone = schema.mailboxes, schema.messages, schema.expunged

_BUMP = (update(_mb).where(_mb.c.id == bindparam("b_box"))
         .values(highest_modseq=_mb.c.highest_modseq + 1))
_UNCOUNT = (update(_mb).where(_mb.c.id == bindparam("b_box"))
            .values(message_count=_mb.c.message_count - bindparam("b_gone")))
_HIGHEST = select(_mb.c.highest_modseq).where(_mb.c.id == bindparam("b_box"))
_NOTIFY = select(func.pg_notify(literal(NOTIFY_CHANNEL), bindparam("b_payload")))
_INSERT_TOMBSTONE = insert(_gone)
_NTH_NEWEST_TOMBSTONE = (select(_gone.c.modseq).where(_gone.c.mailbox_id == bindparam("b_box"))
                         .order_by(_gone.c.modseq.desc())
                         .limit(1).offset(bindparam("b_keep")))
_PURGE_TOMBSTONES = delete(_gone).where((_gone.c.mailbox_id == bindparam("b_box"))
                                        & (_gone.c.modseq <= bindparam("b_upto")))
_SET_HORIZON = (update(_mb).where((_mb.c.id == bindparam("b_box"))
                                  & (_mb.c.vanished_horizon < bindparam("b_upto")))
                .values(vanished_horizon=bindparam("b_upto")))
_ROW_COLUMNS = (_msg.c.id, _msg.c.uid, _msg.c.size, _msg.c.internal_date, _msg.c.modseq,
                _msg.c.flags)
_SNAPSHOT_ROWS = (select(*_ROW_COLUMNS)
                  .where((_msg.c.mailbox_id == bindparam("b_box"))
                         & (_msg.c.deleted.is_(False)))
                  .order_by(_msg.c.uid))
_CHANGED_ROWS = (select(*_ROW_COLUMNS)
                 .where((_msg.c.mailbox_id == bindparam("b_box"))
                        & (_msg.c.modseq > bindparam("b_since"))
                        & (_msg.c.deleted.is_(False)))
                 .order_by(_msg.c.uid))
_EXPUNGED_SINCE = (select(_gone.c.uid)
                   .where((_gone.c.mailbox_id == bindparam("b_box"))
                          & (_gone.c.modseq > bindparam("b_since")))
                   .order_by(_gone.c.uid))
# The folder's head: what tells whether anything changed, without counting messages.
_FOLDER_HEAD = (select(_mb.c.id, _mb.c.uid_validity, _mb.c.uid_next, _mb.c.highest_modseq,
                       _mb.c.special_use, _mb.c.vanished_horizon, _mb.c.message_count)
                .where((_mb.c.user == bindparam("b_user"))
                       & (_mb.c.name == bindparam("b_folder"))))


def folder_head(conn: Connection, user: str, folder: str) -> tuple | None:
    """``(mailbox id, uid_validity, uid_next, highest_modseq, special_use,
    vanished_horizon, message_count)`` of (user, folder), or None: one indexed row."""
    return fetch_one(conn, _FOLDER_HEAD, {"b_user": user, "b_folder": folder})


def next_modseq(conn: Connection, box_id: int) -> int:
    """Raise the folder's highest_modseq (taking its row lock) and return the new one."""
    execute(conn, _BUMP, {"b_box": box_id})
    row = fetch_one(conn, _HIGHEST, {"b_box": box_id})
    assert row is not None, f"mailbox {box_id} vanished inside its own transaction"
    announce(conn, box_id)
    return int(row[0])


def announce(conn: Connection, box_id: int) -> None:
    """Tell watchers in other processes (PostgreSQL NOTIFY, sent at commit)."""
    if conn.dialect.name == "postgresql":
        execute(conn, _NOTIFY, {"b_payload": str(box_id)})


def tombstone(conn: Connection, box_id: int, uids, modseq: int,
              limit: int = TOMBSTONE_LIMIT) -> None:
    """Record ``uids`` of ``box_id`` as expunged at ``modseq``; keep the newest
    ``limit`` tombstones of the folder and move its horizon past the purged ones."""
    uids = list(uids)
    if not uids:
        return
    conn.execute(_INSERT_TOMBSTONE, [{"mailbox_id": box_id, "uid": uid, "modseq": modseq}
                                     for uid in uids])
    row = fetch_one(conn, _NTH_NEWEST_TOMBSTONE, {"b_box": box_id, "b_keep": limit})
    if row is not None:
        params = {"b_box": box_id, "b_upto": int(row[0])}
        execute(conn, _PURGE_TOMBSTONES, params)
        execute(conn, _SET_HORIZON, params)


def remove_messages(conn: Connection, message_ids, box_id: int | None = None,
                    limit: int = TOMBSTONE_LIMIT) -> list[int]:
    """Delete message rows, leaving tombstones with a new modseq per folder; only
    those in ``box_id`` when given. → the ids removed. Their blobs go when the sweep
    finds them unreferenced (another message, the spool or a repository may share
    them)."""
    by_box: dict[int, list[tuple[int, int]]] = {}
    for box, mid, uid in _box_rows(conn, message_ids, box_id):
        by_box.setdefault(box, []).append((mid, uid))
    removed: list[int] = []
    for box, rows in sorted(by_box.items()):
        modseq = next_modseq(conn, box)
        ids = [mid for mid, _uid in rows]
        gone = 0
        for start in range(0, len(ids), _IN_CHUNK):
            gone += conn.execute(delete(_msg).where(
                _msg.c.id.in_(ids[start:start + _IN_CHUNK]))).rowcount
        execute(conn, _UNCOUNT, {"b_box": box, "b_gone": gone})
        tombstone(conn, box, [uid for _mid, uid in rows], modseq, limit)
        removed += ids
    return removed


def _box_rows(conn: Connection, message_ids, box_id: int | None) -> Iterator[tuple]:
    ids = list(dict.fromkeys(message_ids))
    for start in range(0, len(ids), _IN_CHUNK):
        query = (select(_msg.c.mailbox_id, _msg.c.id, _msg.c.uid)
                 .where(_msg.c.id.in_(ids[start:start + _IN_CHUNK])))
        if box_id is not None:
            query = query.where(_msg.c.mailbox_id == box_id)
        yield from conn.execute(query)


def snapshot_row_chunks(conn: Connection, box_id: int) -> Iterator[list[tuple]]:
    """``(id, uid, size, internal_date, modseq, flags)`` of every message of the
    folder in uid order, as lists of plain driver tuples."""
    return fetch_chunks(conn, _SNAPSHOT_ROWS, {"b_box": box_id}, size=2048)


def changed_rows(conn: Connection, box_id: int, since: int) -> list[tuple]:
    """The rows (as :func:`snapshot_row_chunks`) with a modseq above ``since``."""
    return [row for chunk in fetch_chunks(conn, _CHANGED_ROWS,
                                          {"b_box": box_id, "b_since": since}, size=2048)
            for row in chunk]


def expunged_since(conn: Connection, box_id: int, since: int,
                   horizon: int) -> list[int] | None:
    """The sorted UIDs expunged with a modseq above ``since``, or None when tombstones
    of that time were purged (``since`` below the folder's ``vanished_horizon``)."""
    if since < horizon:
        return None
    return [row[0] for chunk in fetch_chunks(conn, _EXPUNGED_SINCE,
                                             {"b_box": box_id, "b_since": since})
            for row in chunk]


def change_flags(conn: Connection, message_ids, compute,
                 unchanged_since: int | None = None):
    """Apply ``compute(message id, old flags text) -> new flags text`` to the messages, inside the
    caller's write transaction. → ``(updated {id: (flags text, modseq)}, failed set,
    changed mailbox ids)``. A message whose modseq is above ``unchanged_since`` is
    left alone and failed; each folder with a real change gets one new modseq, given
    to every message whose flags changed. The folders' rows are locked first
    (PostgreSQL), so two processes changing the same messages never lose a change.
    """
    ids = list(dict.fromkeys(message_ids))
    boxes = sorted({box for box, _mid, _uid in _box_rows(conn, ids, None)})
    if not boxes:
        return {}, set(), []
    if conn.dialect.name == "postgresql":
        conn.execute(select(_mb.c.id).where(_mb.c.id.in_(boxes))
                     .order_by(_mb.c.id).with_for_update())
    current: dict[int, tuple] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        for mid, box, text, modseq in conn.execute(
                select(_msg.c.id, _msg.c.mailbox_id, _msg.c.flags, _msg.c.modseq)
                .where(_msg.c.id.in_(ids[start:start + _IN_CHUNK]))):
            current[mid] = (box, text, modseq)
    updated: dict[int, tuple[str, int]] = {}
    failed: set[int] = set()
    changes: dict[int, dict[str, list[int]]] = {}      # box → new flags → ids
    for mid, (box, text, modseq) in current.items():
        if unchanged_since is not None and modseq > unchanged_since:
            failed.add(mid)
            continue
        new = compute(mid, text)
        if new == text:
            updated[mid] = (text, modseq)
        else:
            changes.setdefault(box, {}).setdefault(new, []).append(mid)
    for box, groups in sorted(changes.items()):
        modseq = next_modseq(conn, box)
        for text, group in groups.items():
            for start in range(0, len(group), _IN_CHUNK):
                conn.execute(update(_msg).where(_msg.c.id.in_(group[start:start + _IN_CHUNK]))
                             .values(flags=text, modseq=modseq))
            for mid in group:
                updated[mid] = (text, modseq)
    return updated, failed, sorted(changes)
