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

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..api import MessagingError
from ..mail import MessageSource
from . import schema
from .db import execute, fetch_chunks, fetch_one

__all__ = ["QuotaExceeded", "MessageInfo", "MessageContent", "format_prefix",
           "get_or_create_mailbox", "store_message", "message_row_chunks", "mailbox_state",
           "list_messages", "message_content",
           "message_contents", "folder_states", "message_flags", "store_flags",
           "delete_messages", "delete_folder_messages", "quota_usage", "check_quota",
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
             .values(uid_next=_mb.c.uid_next + 1))
_quota = _users.alias("quota_of")
# The UPDATE takes the mailbox's row lock (PostgreSQL) before the uid is read.
_TAKE_UID = (update(_mb).where((_mb.c.user == bindparam("b_user"))
                               & (_mb.c.name == bindparam("b_folder")))
             .values(uid_next=_mb.c.uid_next + 1)
             .returning(_mb.c.id, _mb.c.uid_next,
                        select(_quota.c.quota).where(_quota.c.name == bindparam("b_user"))
                        .scalar_subquery()))
_UID_NEXT = select(_mb.c.uid_next).where(_mb.c.id == bindparam("b_box"))
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
    box_id = conn.execute(_MAILBOX_ID, {"b_user": user, "b_folder": folder}).scalar()
    if box_id is not None:
        return box_id
    return _create_mailbox(conn, user, folder)


def _create_mailbox(conn: Connection, user: str, folder: str) -> int:
    savepoint = conn.begin_nested()
    try:
        conn.execute(insert(schema.mailboxes).values(
            user=user, name=folder, uid_validity=int(time.time()), uid_next=1))
        savepoint.commit()
    except IntegrityError:          # created concurrently by another process
        savepoint.rollback()
    return conn.execute(_MAILBOX_ID, {"b_user": user, "b_folder": folder}).scalar_one()


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
                  size: int, internal_date: float | None = None) -> int:
    """Add a message to (user, folder) inside the caller's write transaction; → uid.

    ``size`` is the blob's size; the stored size adds ``len(prefix)``. The blob row
    must exist (or be inserted in the same transaction). Raises QuotaExceeded (the
    caller's transaction is then rolled back; a caller that carries on anyway leaves
    only a gap in the uids). Two prebuilt statements where the database has
    UPDATE … RETURNING: the uid and the user's quota from the UPDATE, then the INSERT.
    """
    total = len(prefix) + size
    if conn.dialect.update_returning:
        params = {"b_user": user, "b_folder": folder}
        row = fetch_one(conn, _TAKE_UID, params)
        if row is None:
            _create_mailbox(conn, user, folder)
            row = fetch_one(conn, _TAKE_UID, params)
        box_id, uid_next, quota = row
        uid = uid_next - 1
        _check_quota(conn, user, quota, total)
    else:
        check_quota(conn, user, total)
        box_id = get_or_create_mailbox(conn, user, folder)
        conn.execute(_NEXT_UID, {"b_box": box_id})
        uid = conn.execute(_UID_NEXT, {"b_box": box_id}).scalar_one() - 1
    execute(conn, _INSERT_MESSAGE, {
        "mailbox_id": box_id, "uid": uid, "uidl": uuid.uuid4().hex, "blob_id": blob_id,
        "prefix": prefix, "size": total, "flags": "", "deleted": False,
        "internal_date": internal_date if internal_date is not None else time.time()})
    return uid


_MAILBOX_STATE = (select(_mb.c.id, _mb.c.uid_validity, _mb.c.uid_next,
                         select(func.count()).select_from(_msg)
                         .where((_msg.c.mailbox_id == _mb.c.id)
                                & (_msg.c.deleted.is_(False)))
                         .scalar_subquery())
                  .where((_mb.c.user == bindparam("b_user"))
                         & (_mb.c.name == bindparam("b_folder"))))


def mailbox_state(conn: Connection, user: str, folder: str = "INBOX") -> tuple | None:
    """``(mailbox id, uid_validity, uid_next, message count)`` of (user, folder), or
    None when it does not exist.

    Equal states mean the same messages: message rows never change, every new message
    takes a fresh uid from ``uid_next``, and every removal lowers the count. A cached
    listing is valid while the state it was read at is the mailbox's state.
    """
    row = fetch_one(conn, _MAILBOX_STATE, {"b_user": user, "b_folder": folder})
    return tuple(row) if row is not None else None


def message_row_chunks(conn: Connection, user: str,
                       folder: str = "INBOX") -> Iterator[list[tuple]]:
    """``(id, uid, uidl, size)`` of every message of (user, folder) in uid order, as
    lists of plain tuples from one query (no mailbox: no rows)."""
    return fetch_chunks(conn, _LIST_MESSAGES, {"b_user": user, "b_folder": folder})


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


def delete_messages(conn: Connection, message_ids) -> int:
    """Delete message rows (their blobs go when the sweep finds them unreferenced)."""
    ids = list(message_ids)
    removed = 0
    for start in range(0, len(ids), 500):
        res = conn.execute(delete(schema.messages)
                           .where(schema.messages.c.id.in_(ids[start:start + 500])))
        removed += res.rowcount
    return removed


_FOLDER_STATES = (select(_mb.c.name, _mb.c.uid_validity, _mb.c.uid_next,
                         select(func.count()).select_from(_msg)
                         .where((_msg.c.mailbox_id == _mb.c.id)
                                & (_msg.c.deleted.is_(False)))
                         .scalar_subquery())
                  .where(_mb.c.user == bindparam("b_user")).order_by(_mb.c.name))


def folder_states(conn: Connection, user: str) -> list[tuple[str, int, int, int]]:
    """``[(folder, uid_validity, uid_next, message count)]`` of every mailbox of
    ``user``, by name."""
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
    """Write ``{message id: flags (space-separated)}`` inside the caller's transaction."""
    for mid, flags in flags_by_id.items():
        conn.execute(update(_msg).where(_msg.c.id == mid).values(flags=flags))


def delete_folder_messages(conn: Connection, user: str, folder: str, message_ids) -> int:
    """Delete those of ``message_ids`` that are in (user, folder); → how many."""
    box_id = conn.execute(_MAILBOX_ID, {"b_user": user, "b_folder": folder}).scalar()
    ids = list(message_ids)
    if box_id is None or not ids:
        return 0
    removed = 0
    for start in range(0, len(ids), 500):
        removed += conn.execute(delete(_msg).where(
            (_msg.c.mailbox_id == box_id) & _msg.c.id.in_(ids[start:start + 500]))).rowcount
    return removed
