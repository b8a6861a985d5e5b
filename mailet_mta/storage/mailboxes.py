"""Mailboxes and the messages in them (``mailboxes`` and ``messages`` tables).

A message row points at a blob shared with the spool (LocalDelivery never copies a
body) plus a small ``prefix`` of trace headers added at delivery (``Return-Path``,
``Delivered-To``). ``size`` is the number of octets POP3 RETR sends for it before
byte-stuffing: ``len(prefix) + blob size`` (blobs hold CRLF text). Listing reads only
indexed columns (id, uid, uidl, size), never a body, so STAT/LIST/UIDL on a mailbox
of 100,000 messages are one index scan.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..api import MessagingError
from ..mail import MessageSource
from . import schema

__all__ = ["QuotaExceeded", "MessageInfo", "MessageContent", "format_prefix",
           "get_or_create_mailbox", "store_message", "list_messages", "message_content",
           "delete_messages", "quota_usage", "check_quota", "mailbox_summary"]


class QuotaExceeded(MessagingError, ValueError):
    """Storing the message would exceed the user's quota (a permanent failure).

    ``status`` is the SMTP reply a bounce should carry (RFC 3463 5.2.2).
    """

    status = "552 5.2.2"

    def __init__(self, user: str, quota: int, usage: int, size: int):
        super().__init__(f"{self.status} <{user}>: mailbox full "
                         f"(quota {quota} octets, used {usage}, message {size})")
        self.user, self.quota, self.usage, self.size = user, quota, usage, size


@dataclass(frozen=True)
class MessageInfo:
    """What POP3 needs of a message without reading it: row id, uid, UIDL, octets."""

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


def format_prefix(headers) -> bytes:
    """``[("Return-Path", "<a@b>"), …]`` → CRLF-terminated header lines (UTF-8)."""
    out = []
    for name, value in headers or ():
        value = str(value).replace("\r", " ").replace("\n", " ")
        out.append(f"{name}: {value}\r\n".encode("utf-8"))
    return b"".join(out)


def get_or_create_mailbox(conn: Connection, user: str, folder: str = "INBOX") -> int:
    """The mailbox id of (user, folder), creating it with a fresh uid_validity."""
    mb = schema.mailboxes
    query = select(mb.c.id).where((mb.c.user == user) & (mb.c.name == folder))
    box_id = conn.execute(query).scalar()
    if box_id is not None:
        return box_id
    savepoint = conn.begin_nested()
    try:
        conn.execute(insert(mb).values(user=user, name=folder,
                                       uid_validity=int(time.time()), uid_next=1))
        savepoint.commit()
    except IntegrityError:          # created concurrently by another process
        savepoint.rollback()
    return conn.execute(query).scalar_one()


def quota_usage(conn: Connection, user: str) -> int:
    """Octets stored for ``user`` across all their mailboxes."""
    mb, msg = schema.mailboxes, schema.messages
    return conn.execute(select(func.coalesce(func.sum(msg.c.size), 0))
                        .select_from(msg.join(mb, msg.c.mailbox_id == mb.c.id))
                        .where(mb.c.user == user)).scalar() or 0


def check_quota(conn: Connection, user: str, size: int) -> None:
    """Raise QuotaExceeded when adding ``size`` octets would pass the user's quota."""
    quota = conn.execute(select(schema.users.c.quota)
                         .where(schema.users.c.name == user)).scalar()
    if quota is None:
        return
    usage = quota_usage(conn, user)
    if usage + size > quota:
        raise QuotaExceeded(user, quota, usage, size)


def store_message(conn: Connection, user: str, folder: str, blob_id: str, prefix: bytes,
                  size: int, internal_date: float | None = None) -> int:
    """Add a message to (user, folder) inside the caller's write transaction; → uid.

    ``size`` is the blob's size; the stored size adds ``len(prefix)``. The blob row
    must exist (or be inserted in the same transaction). Raises QuotaExceeded.
    """
    total = len(prefix) + size
    check_quota(conn, user, total)
    box_id = get_or_create_mailbox(conn, user, folder)
    mb = schema.mailboxes
    # The UPDATE takes the row lock (PostgreSQL) before we read the allocated uid.
    conn.execute(update(mb).where(mb.c.id == box_id).values(uid_next=mb.c.uid_next + 1))
    uid = conn.execute(select(mb.c.uid_next).where(mb.c.id == box_id)).scalar_one() - 1
    conn.execute(insert(schema.messages).values(
        mailbox_id=box_id, uid=uid, uidl=uuid.uuid4().hex, blob_id=blob_id, prefix=prefix,
        size=total, internal_date=internal_date if internal_date is not None else time.time(),
        flags="", deleted=False))
    return uid


def list_messages(conn: Connection, user: str, folder: str = "INBOX") -> list[MessageInfo]:
    """The messages of (user, folder) in uid order: indexed columns only."""
    mb, msg = schema.mailboxes, schema.messages
    box_id = conn.execute(select(mb.c.id).where((mb.c.user == user) & (mb.c.name == folder))
                          ).scalar()
    if box_id is None:
        return []
    rows = conn.execute(select(msg.c.id, msg.c.uid, msg.c.uidl, msg.c.size)
                        .where((msg.c.mailbox_id == box_id) & (msg.c.deleted.is_(False)))
                        .order_by(msg.c.uid))
    return [MessageInfo(*row) for row in rows]


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
    msg, b = schema.messages, schema.blobs
    row = conn.execute(select(msg.c.prefix, b.c.id, b.c.size, b.c.data)
                       .select_from(msg.join(b, msg.c.blob_id == b.c.id))
                       .where(msg.c.id == message_id)).first()
    if row is None:
        return None
    prefix, blob_id, size, data = row
    return MessageContent(bytes(prefix), blobs.source(blob_id, size,
                                                      None if data is None else bytes(data)))


def delete_messages(conn: Connection, message_ids) -> int:
    """Delete message rows (their blobs go when the sweep finds them unreferenced)."""
    ids = list(message_ids)
    removed = 0
    for start in range(0, len(ids), 500):
        res = conn.execute(delete(schema.messages)
                           .where(schema.messages.c.id.in_(ids[start:start + 500])))
        removed += res.rowcount
    return removed
