"""Mailboxes and the messages in them (``mailboxes`` and ``messages`` tables).

A message row points at a blob shared with the spool (LocalDelivery never copies a
body) plus a small ``prefix`` of trace headers added at delivery (``Return-Path``,
``Delivered-To``). ``size`` is the number of octets POP3 RETR sends for it before
byte-stuffing: ``len(prefix) + blob size`` (blobs hold CRLF text). Listing reads only
the columns id, uid, uidl and size along the (mailbox, uid) index, never a body, in
one query returning the driver's plain tuples in chunks: a POP3 login on 100,000
messages.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..api import MessagingError
from ..mail import MessageSource
from ..mailstore import SPECIAL_USE_FOLDERS, canonical_folder
from . import schema
from .db import execute, fetch_chunks, fetch_one
from .folder_changes import NOTIFY_CHANNEL, TOMBSTONE_LIMIT, announce, remove_messages

__all__ = ["QuotaExceeded", "MessageInfo", "MessageContent", "format_prefix",
           "get_or_create_mailbox", "store_message", "deliver_statement",
           "message_row_chunks", "mailbox_state",
           "list_messages", "message_content",
           "message_contents", "folder_states", "message_flags", "store_flags",
           "delete_messages", "delete_folder_messages", "expunge_folder_messages",
           "new_uid_validity", "quota_usage", "check_quota", "user_quota", "read_headers",
           "mailbox_summary"]


class QuotaExceeded(MessagingError, ValueError):
    """Storing the message would exceed the user's quota (a permanent failure).

    ``status`` is the SMTP reply a bounce should carry (RFC 3463 5.2.2).
    """

    status = "552 5.2.2"

    def __init__(self, user: str, quota: int, usage: int, size: int):
        super().__init__(f"{self.status} <{user}>: mailbox full "
                         f"(quota {quota} octets, used {usage}, message {size})")
        self.user, self.quota, self.usage, self.size = user, quota, usage, size


class MessageInfo(NamedTuple):
    """What POP3 needs of a message without reading it: row id, uid, UIDL, octets.

    A named tuple: a login on 100,000 messages builds 100,000 of them.
    """

    id: int
    uid: int
    uidl: str
    size: int


@dataclass
class MessageContent:
    """A message as RETR sends it: ``prefix`` then the blob's bytes from ``source``."""

    prefix: bytes
    source: MessageSource

    @property
    def size(self) -> int:
        return len(self.prefix) + (self.source.size or 0)

    def chunks(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """The prefix, then the blob in ``chunk_size`` pieces (one open file at a time)."""
        if self.prefix:
            yield self.prefix
        source = self.source
        if source.in_memory:
            data = source.read()
            for start in range(0, len(data), chunk_size):
                yield data[start:start + chunk_size]
            return
        with source.open() as f:
            while True:
                block = f.read(chunk_size)
                if not block:
                    return
                yield block


def format_prefix(headers) -> bytes:
    """``[("Return-Path", "<a@b>"), …]`` → CRLF-terminated header lines (UTF-8)."""
    out = []
    for name, value in headers or ():
        value = str(value).replace("\r", " ").replace("\n", " ")
        out.append(f"{name}: {value}\r\n".encode())
    return b"".join(out)


# Statements built once: building Core constructs per call cost most of a delivery.
_mb, _msg, _users = schema.mailboxes, schema.messages, schema.users
_MAILBOX_ID = select(_mb.c.id).where((_mb.c.user == bindparam("b_user"))
                                     & (_mb.c.name == bindparam("b_folder")))
_USER_QUOTA = select(_users.c.quota).where(_users.c.name == bindparam("b_user"))
_QUOTA_USAGE = (select(func.coalesce(func.sum(_msg.c.size), 0))
                .select_from(_msg.join(_mb, _msg.c.mailbox_id == _mb.c.id))
                .where(_mb.c.user == bindparam("b_user")))
_NEXT_UID = (update(_mb).where(_mb.c.id == bindparam("b_box"))
             .values(uid_next=_mb.c.uid_next + 1, highest_modseq=_mb.c.highest_modseq + 1,
                     message_count=_mb.c.message_count + 1))
_quota = _users.alias("quota_of")
# The UPDATE takes the mailbox's row lock (PostgreSQL) before the uid is read.
_TAKE_UID = (update(_mb).where((_mb.c.user == bindparam("b_user"))
                               & (_mb.c.name == bindparam("b_folder")))
             .values(uid_next=_mb.c.uid_next + 1, highest_modseq=_mb.c.highest_modseq + 1,
                     message_count=_mb.c.message_count + 1)
             .returning(_mb.c.id, _mb.c.uid_next, _mb.c.highest_modseq,
                        select(_quota.c.quota).where(_quota.c.name == bindparam("b_user"))
                        .scalar_subquery()))
_UID_NEXT = select(_mb.c.uid_next, _mb.c.highest_modseq).where(_mb.c.id == bindparam("b_box"))
# PostgreSQL: the whole delivery of a message in one round trip. ``taken`` takes the
# folder's row lock and its next uid and modseq; ``stored`` inserts the message only
# for a user without a quota (a quota is checked by the caller after the lock is held:
# this statement's snapshot predates the lock, so a sum of the user's messages in it
# could miss one committed meanwhile); the NOTIFY is sent at commit. No row: no such
# folder. A row without ``stored_uid`` for a user with a quota: the uid is taken and
# the caller checks the quota, then runs _PG_INSERT_MESSAGE.
_PG_MESSAGE_COLUMNS = ("mailbox_id, uid, uidl, blob_id, prefix, size, internal_date, flags, "
                       "deleted, modseq")
_PG_MESSAGE_VALUES = (":uidl, :blob_id, :prefix, :size, :internal_date, :flags, false")
_PG_STORE_CTES = f"""
WITH quota AS (SELECT quota FROM users WHERE name = :b_user),
taken AS (
    UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1,
                         message_count = message_count + 1
    WHERE "user" = :b_user AND name = :b_folder
    RETURNING id, uid_next - 1 AS uid, highest_modseq AS modseq),
stored AS (
    INSERT INTO messages ({_PG_MESSAGE_COLUMNS})
    SELECT id, uid, {_PG_MESSAGE_VALUES}, modseq FROM taken
    WHERE NOT EXISTS (SELECT 1 FROM quota WHERE quota IS NOT NULL)
    RETURNING mailbox_id, uid),
told AS (SELECT uid, pg_notify('{NOTIFY_CHANNEL}', CAST(mailbox_id AS TEXT)) FROM stored)
"""
_PG_STORE_MESSAGE = text(_PG_STORE_CTES + """
SELECT taken.id, taken.uid, taken.modseq, (SELECT quota FROM quota), told.uid
FROM taken LEFT JOIN told ON true""")
# The same delivery as a statement whose result nobody reads (the database writer
# sends it with others and the COMMIT in one flight): when it could not store the
# message (no such folder, or the user has a quota) it fails, and with it the whole
# transaction, which the writer then runs again the ordinary way (store_message).
# The failure is a cast of a text that is no number: plain SQL has no RAISE.
_PG_DELIVER = text(_PG_STORE_CTES + """
SELECT CAST(CASE WHEN count(told.uid) = 1 THEN '1'
                 ELSE 'not stored in one statement' END AS integer) FROM told""")
_PG_INSERT_MESSAGE = text(f"""
WITH stored AS (
    INSERT INTO messages ({_PG_MESSAGE_COLUMNS})
    VALUES (:b_box, :uid, {_PG_MESSAGE_VALUES}, :modseq)
    RETURNING mailbox_id)
SELECT pg_notify('{NOTIFY_CHANNEL}', CAST(mailbox_id AS TEXT)) FROM stored""")
_UNTAKE = (update(_mb).where(_mb.c.id == bindparam("b_box"))
           .values(message_count=_mb.c.message_count - 1))
_INSERT_MESSAGE = insert(_msg)
_LIST_MESSAGES = (select(_msg.c.id, _msg.c.uid, _msg.c.uidl, _msg.c.size)
                  .select_from(_msg.join(_mb, _msg.c.mailbox_id == _mb.c.id))
                  .where((_mb.c.user == bindparam("b_user"))
                         & (_mb.c.name == bindparam("b_folder"))
                         & (_msg.c.deleted.is_(False)))
                  .order_by(_msg.c.uid))
_MESSAGE_CONTENTS = (select(_msg.c.id, _msg.c.prefix, schema.blobs.c.id, schema.blobs.c.size,
                            schema.blobs.c.data)
                     .select_from(_msg.join(schema.blobs, _msg.c.blob_id == schema.blobs.c.id))
                     .where(_msg.c.id.in_(bindparam("b_ids", expanding=True))))
_MESSAGE_CONTENT = (select(_msg.c.prefix, schema.blobs.c.id, schema.blobs.c.size,
                           schema.blobs.c.data)
                    .select_from(_msg.join(schema.blobs, _msg.c.blob_id == schema.blobs.c.id))
                    .where(_msg.c.id == bindparam("b_id")))


def get_or_create_mailbox(conn: Connection, user: str, folder: str = "INBOX") -> int:
    """The mailbox id of (user, folder), creating it with a fresh uid_validity."""
    folder = canonical_folder(folder)
    box_id = conn.execute(_MAILBOX_ID, {"b_user": user, "b_folder": folder}).scalar()
    if box_id is not None:
        return box_id
    return _create_mailbox(conn, user, folder)


def _create_mailbox(conn: Connection, user: str, folder: str,
                    special_use: str | None = None) -> int:
    """Create (user, folder) — and its missing superiors, as IMAP CREATE does — with a
    fresh uid_validity; a special-use name (``Junk``…) gets its attribute."""
    if special_use is None:
        special_use = dict(SPECIAL_USE_FOLDERS).get(folder)
    parts = folder.split("/")
    for depth in range(1, len(parts)):
        superior = "/".join(parts[:depth])
        if conn.execute(_MAILBOX_ID, {"b_user": user, "b_folder": superior}).scalar() is None:
            _create_mailbox(conn, user, superior)
    savepoint = conn.begin_nested()
    try:
        conn.execute(insert(schema.mailboxes).values(
            user=user, name=folder, uid_validity=new_uid_validity(conn), uid_next=1,
            highest_modseq=1, special_use=special_use, vanished_horizon=0))
        savepoint.commit()
    except IntegrityError:          # created concurrently by another process
        savepoint.rollback()
    return conn.execute(_MAILBOX_ID, {"b_user": user, "b_folder": folder}).scalar_one()


_meta = schema.meta
_LAST_UID_VALIDITY = "uid_validity"


def new_uid_validity(conn: Connection) -> int:
    """A uid_validity no folder of this database ever had: the time in seconds, or
    one above the last one handed out when that is later (folders created, deleted and
    created again within a second). On PostgreSQL the counter's row lock orders
    concurrent creations."""
    query = select(_meta.c.value).where(_meta.c.key == _LAST_UID_VALIDITY)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    last = conn.execute(query).scalar()
    if last is None:
        highest = conn.execute(select(func.max(_mb.c.uid_validity))).scalar() or 0
        value = max(int(time.time()), int(highest) + 1)
        savepoint = conn.begin_nested()
        try:
            conn.execute(insert(_meta).values(key=_LAST_UID_VALIDITY, value=str(value)))
            savepoint.commit()
            return value
        except IntegrityError:          # another process made the counter meanwhile
            savepoint.rollback()
            return new_uid_validity(conn)
    value = max(int(time.time()), int(last) + 1)
    conn.execute(update(_meta).where(_meta.c.key == _LAST_UID_VALIDITY)
                 .values(value=str(value)))
    return value


def quota_usage(conn: Connection, user: str) -> int:
    """Octets stored for ``user`` across all their mailboxes."""
    return conn.execute(_QUOTA_USAGE, {"b_user": user}).scalar() or 0


def check_quota(conn: Connection, user: str, size: int) -> None:
    """Raise QuotaExceeded when adding ``size`` octets would pass the user's quota."""
    quota = conn.execute(_USER_QUOTA, {"b_user": user}).scalar()
    _check_quota(conn, user, quota, size)


def _check_quota(conn: Connection, user: str, quota: int | None, size: int) -> None:
    if quota is None:
        return
    usage = quota_usage(conn, user)
    if usage + size > quota:
        raise QuotaExceeded(user, quota, usage, size)


def store_message(conn: Connection, user: str, folder: str, blob_id: str, prefix: bytes,
                  size: int, internal_date: float | None = None, flags: str = "",
                  create: bool = True) -> int:
    """Add a message to (user, folder) inside the caller's write transaction; → uid.

    The message takes the folder's next uid and a new modseq; ``flags`` are
    space-separated. A missing folder is created unless ``create`` is False (then
    LookupError).

    ``size`` is the blob's size; the stored size adds ``len(prefix)``. The blob row
    must exist (or be inserted in the same transaction). Raises QuotaExceeded (the
    caller's transaction is then rolled back; a caller that carries on anyway leaves
    only a gap in the uids). On PostgreSQL one statement (uid, insert and NOTIFY) for
    a user without a quota; elsewhere two prebuilt statements where the database has
    UPDATE … RETURNING: the uid and the user's quota from the UPDATE, then the INSERT.
    """
    total = len(prefix) + size
    folder = canonical_folder(folder)
    if conn.dialect.name == "postgresql":
        return _store_message_pg(conn, user, folder, _pg_store_params(
            user, folder, blob_id, prefix, size, internal_date, flags), create)
    if conn.dialect.update_returning:
        box_id, uid_next, modseq, quota = _take_uid(
            conn, _TAKE_UID, {"b_user": user, "b_folder": folder}, create)
        uid = uid_next - 1
        _check_quota_taken(conn, user, quota, total, box_id)
    else:
        check_quota(conn, user, total)
        box_id = conn.execute(_MAILBOX_ID, {"b_user": user, "b_folder": folder}).scalar()
        if box_id is None:
            if not create:
                raise LookupError(f"{user} has no folder {folder!r}")
            box_id = _create_mailbox(conn, user, folder)
        conn.execute(_NEXT_UID, {"b_box": box_id})
        uid_next, modseq = conn.execute(_UID_NEXT, {"b_box": box_id}).one()
        uid = uid_next - 1
    execute(conn, _INSERT_MESSAGE, {
        "mailbox_id": box_id, "uid": uid, "uidl": uuid.uuid4().hex, "blob_id": blob_id,
        "prefix": prefix, "size": total, "flags": flags, "deleted": False,
        "internal_date": internal_date if internal_date is not None else time.time(),
        "modseq": modseq})
    announce(conn, box_id)
    return uid


def deliver_statement(user: str, folder: str, blob_id: str, prefix: bytes,
                      size: int) -> tuple:
    """PostgreSQL: ``(statement, params)`` that does what :func:`store_message` does
    for a user without a quota whose folder exists, or fails (see ``_PG_DELIVER``);
    for the database writer's pipelined flight, where no result is read."""
    return (_PG_DELIVER, _pg_store_params(user, canonical_folder(folder), blob_id, prefix,
                                          size))


def _pg_store_params(user: str, folder: str, blob_id: str, prefix: bytes, size: int,
                     internal_date: float | None = None, flags: str = "") -> dict:
    """The parameters of _PG_STORE_MESSAGE and _PG_DELIVER (``folder`` canonical,
    ``size`` the blob's: the stored size adds the prefix)."""
    return {"b_user": user, "b_folder": folder, "uidl": uuid.uuid4().hex,
            "blob_id": blob_id, "prefix": prefix, "size": len(prefix) + size,
            "flags": flags,
            "internal_date": internal_date if internal_date is not None else time.time()}


def _take_uid(conn: Connection, statement, params: dict, create: bool) -> tuple:
    """The row of ``statement`` (a uid taken in (b_user, b_folder)); a missing folder
    is created first unless ``create`` is False (then LookupError)."""
    row = fetch_one(conn, statement, params)
    if row is None:
        user, folder = params["b_user"], params["b_folder"]
        if not create:
            raise LookupError(f"{user} has no folder {folder!r}")
        _create_mailbox(conn, user, folder)
        row = fetch_one(conn, statement, params)
        assert row is not None, f"{user}'s folder {folder!r} vanished after its creation"
    return row


def _store_message_pg(conn: Connection, user: str, folder: str, params: dict,
                      create: bool) -> int:
    """store_message on PostgreSQL: one statement for a user without a quota; with a
    quota, the usage is summed once the folder's row lock is held, then the message
    inserted."""
    box_id, uid, modseq, quota, stored_uid = _take_uid(conn, _PG_STORE_MESSAGE, params,
                                                       create)
    if stored_uid is None:
        _check_quota_taken(conn, user, quota, params["size"], box_id)
        fetch_one(conn, _PG_INSERT_MESSAGE, {**params, "b_box": box_id, "uid": uid,
                                             "modseq": modseq})
    return uid


def _check_quota_taken(conn: Connection, user: str, quota: int | None, size: int,
                       box_id: int) -> None:
    """_check_quota once a uid of ``box_id`` is taken: on QuotaExceeded the folder's
    message count is put back (its uid stays a gap)."""
    try:
        _check_quota(conn, user, quota, size)
    except QuotaExceeded:
        execute(conn, _UNTAKE, {"b_box": box_id})
        raise


_MAILBOX_STATE = (select(_mb.c.id, _mb.c.uid_validity, _mb.c.uid_next, _mb.c.message_count,
                         _mb.c.highest_modseq, _mb.c.special_use)
                  .where((_mb.c.user == bindparam("b_user"))
                         & (_mb.c.name == bindparam("b_folder"))))


def mailbox_state(conn: Connection, user: str, folder: str = "INBOX") -> tuple | None:
    """``(mailbox id, uid_validity, uid_next, message count, highest_modseq,
    special_use)`` of (user, folder), or None when it does not exist.

    Equal states mean the same messages: every new message takes a fresh uid from
    ``uid_next``, and every change (new message, flags, removal) raises
    ``highest_modseq``. A cached listing is valid while the state it was read at is
    the mailbox's state.
    """
    row = fetch_one(conn, _MAILBOX_STATE, {"b_user": user,
                                           "b_folder": canonical_folder(folder)})
    return tuple(row) if row is not None else None


def message_row_chunks(conn: Connection, user: str,
                       folder: str = "INBOX") -> Iterator[list[tuple]]:
    """``(id, uid, uidl, size)`` of every message of (user, folder) in uid order, as
    lists of plain tuples from one query (no mailbox: no rows)."""
    return fetch_chunks(conn, _LIST_MESSAGES, {"b_user": user,
                                               "b_folder": canonical_folder(folder)})


def list_messages(conn: Connection, user: str, folder: str = "INBOX") -> list[MessageInfo]:
    """The messages of (user, folder) in uid order, as :class:`MessageInfo`."""
    return [MessageInfo._make(row)
            for chunk in message_row_chunks(conn, user, folder) for row in chunk]


def mailbox_summary(conn: Connection, user: str) -> list[tuple[str, int, int]]:
    """[(folder, message count, octets)] for every mailbox of ``user``."""
    mb, msg = schema.mailboxes, schema.messages
    rows = conn.execute(
        select(mb.c.name, func.count(msg.c.id), func.coalesce(func.sum(msg.c.size), 0))
        .select_from(mb.outerjoin(msg, msg.c.mailbox_id == mb.c.id))
        .where(mb.c.user == user).group_by(mb.c.name).order_by(mb.c.name))
    return [(name, count, octets) for name, count, octets in rows]


def message_content(conn: Connection, blobs, message_id: int) -> MessageContent | None:
    """Prefix + blob source of one message (None when it is gone)."""
    row = conn.execute(_MESSAGE_CONTENT, {"b_id": message_id}).first()
    if row is None:
        return None
    prefix, blob_id, size, data = row
    return MessageContent(bytes(prefix), blobs.source(blob_id, size,
                                                      None if data is None else bytes(data)))


def message_contents(conn: Connection, blobs, message_ids) -> dict[int, MessageContent]:
    """{message id: MessageContent} for the given ids that exist, in one query."""
    ids = list(message_ids)
    out = {}
    for start in range(0, len(ids), 500):
        for mid, prefix, blob_id, size, data in conn.execute(
                _MESSAGE_CONTENTS, {"b_ids": ids[start:start + 500]}):
            out[mid] = MessageContent(bytes(prefix), blobs.source(
                blob_id, size, None if data is None else bytes(data)))
    return out


def read_messages(conn: Connection, blobs, message_ids) -> dict[int, bytes]:
    """{message id: prefix + blob octets} of the given ids that exist (one query, then
    each blob read whole: the caller bounds the octets of ``message_ids``)."""
    ids = list(message_ids)
    if len(ids) == 1:           # the common FETCH n: a plain query, no expanding IN
        one = message_content(conn, blobs, ids[0])
        found = {} if one is None else {ids[0]: one}
    else:
        found = message_contents(conn, blobs, ids)
    out = {}
    for mid, content in found.items():
        chunks = content.chunks()
        try:
            out[mid] = b"".join(chunks)
        finally:
            chunks.close()
    return out


def user_quota(conn: Connection, user: str) -> tuple[int, int | None]:
    """``(octets stored, quota in octets or None)`` of ``user``."""
    return quota_usage(conn, user), conn.execute(_USER_QUOTA, {"b_user": user}).scalar()


def read_headers(conn: Connection, blobs, message_id: int, limit: int) -> bytes | None:
    """The header block of a message (trace prefix and the blob's header up to and
    including the empty line), at most ``limit`` octets; None when it is gone. Reads
    the blob file only as far as needed."""
    content = message_content(conn, blobs, message_id)
    return None if content is None else _header_block(content, limit)


def read_headers_of(conn: Connection, blobs, message_ids, limit: int) -> dict[int, bytes]:
    """{message id: its header block as :func:`read_headers` gives it} of the given
    ids that exist: one query for all, each blob read only as far as its header."""
    return {mid: _header_block(content, limit)
            for mid, content in message_contents(conn, blobs, message_ids).items()}


def _header_block(content: MessageContent, limit: int) -> bytes:
    out = bytearray()
    chunks = content.chunks(16 * 1024)
    try:
        for chunk in chunks:
            start = max(0, len(out) - 3)
            out += chunk
            end = out.find(b"\r\n\r\n", start)
            if end >= 0:
                del out[end + 4:]
                break
            if len(out) >= limit + 4:
                break
    finally:
        chunks.close()
    if out.startswith(b"\r\n") and not content.prefix:
        del out[2:]                     # no header at all: the empty line alone
    return bytes(out[:limit])


def delete_messages(conn: Connection, message_ids, tombstone_limit: int = TOMBSTONE_LIMIT) -> int:
    """Delete message rows, leaving tombstones with a new modseq in each folder (IMAP
    sessions then report the expunge); their blobs go when the sweep finds them
    unreferenced. → how many were removed."""
    return len(remove_messages(conn, message_ids, None, tombstone_limit))


_FOLDER_STATES = (select(_mb.c.name, _mb.c.uid_validity, _mb.c.uid_next, _mb.c.message_count,
                         _mb.c.highest_modseq, _mb.c.special_use)
                  .where(_mb.c.user == bindparam("b_user")).order_by(_mb.c.name))


def folder_states(conn: Connection, user: str) -> list[tuple]:
    """``[(folder, uid_validity, uid_next, message count, highest_modseq,
    special_use)]`` of every mailbox of ``user``, by name."""
    return [tuple(row) for chunk in fetch_chunks(conn, _FOLDER_STATES, {"b_user": user})
            for row in chunk]


def message_flags(conn: Connection, message_ids) -> dict[int, str]:
    """{message id: flags (space-separated)} for the given ids that exist."""
    ids = list(message_ids)
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        out.update(conn.execute(select(_msg.c.id, _msg.c.flags)
                                .where(_msg.c.id.in_(ids[start:start + 500]))).all())
    return out


def store_flags(conn: Connection, flags_by_id: dict[int, str]) -> None:
    """Write ``{message id: flags (space-separated)}`` inside the caller's transaction,
    each changed message with a new modseq of its folder."""
    from .folder_changes import change_flags

    change_flags(conn, flags_by_id, lambda mid, _old: flags_by_id[mid])


def expunge_folder_messages(conn: Connection, user: str, folder: str, message_ids,
                            tombstone_limit: int = TOMBSTONE_LIMIT) -> list[int]:
    """Delete those of ``message_ids`` that are in (user, folder), leaving tombstones;
    → the ids removed."""
    box_id = conn.execute(_MAILBOX_ID, {"b_user": user,
                                        "b_folder": canonical_folder(folder)}).scalar()
    if box_id is None:
        return []
    return remove_messages(conn, message_ids, box_id, tombstone_limit)


def delete_folder_messages(conn: Connection, user: str, folder: str, message_ids) -> int:
    """Delete those of ``message_ids`` that are in (user, folder); → how many."""
    return len(expunge_folder_messages(conn, user, folder, message_ids))
