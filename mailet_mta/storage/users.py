"""Users (James's UsersRepository with virtual hosting): the ``users`` table.

A user is a full address ``local@domain``. The whole name is stored lower-case (the
domain in its IDNA form), so logins and deliveries are case-insensitive. A user's
domain must be local: in the ``domains`` table or among the configured servernames
(``local_domains``). Password hashes are computed by the caller
(:func:`~mailet_mta.storage.passwords.hash_password`, off the reactor) so these
functions do only SQL and can run inside any transaction. Every change bumps the
directory generation in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from ..address import MailAddress, MailAddressError
from . import schema
from .db import Database
from .domains import list_domains

__all__ = ["UserError", "UserInfo", "normalise_user", "add_user", "remove_user",
           "set_password", "set_quota", "get_user", "get_password_hash", "list_users",
           "load_directory"]


class UserError(ValueError):
    """A user operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class UserInfo:
    """One row of the users table without its password hash."""

    name: str
    quota: int | None
    created: float


def normalise_user(name: str) -> str:
    """``Bob@Example.COM`` → ``bob@example.com``; UserError for a malformed address."""
    try:
        addr = MailAddress.parse((name or "").strip())
    except MailAddressError as exc:
        raise UserError(f"{name!r} is not a user address (user@domain): {exc}") from None
    if addr.is_ip_literal:
        raise UserError(f"{name!r}: a user's domain must be a domain name")
    return f"{addr.local_part.lower()}@{addr.domain}"


def _require_local(conn: Connection, user: str, local_domains: Iterable[str]) -> None:
    domain = user.rpartition("@")[2]
    local = {d.lower() for d in local_domains} | set(list_domains(conn))
    if domain not in local:
        raise UserError(f"{domain} is not a local domain; add it first "
                        f"(mailet-mta domains add {domain}) or list it in servernames")


def get_user(conn: Connection, name: str) -> UserInfo | None:
    u = schema.users
    row = conn.execute(select(u.c.name, u.c.quota, u.c.created)
                       .where(u.c.name == normalise_user(name))).first()
    return UserInfo(*row) if row else None


# Built once: a login runs it.
_PASSWORD_HASH = select(schema.users.c.password_hash).where(
    schema.users.c.name == bindparam("b_name"))


def get_password_hash(conn: Connection, name: str) -> str | None:
    """The stored hash of ``name``, or None when no such user exists."""
    try:
        key = normalise_user(name)
    except UserError:
        return None
    return conn.execute(_PASSWORD_HASH, {"b_name": key}).scalar()


def add_user(conn: Connection, name: str, password_hash: str,
             local_domains: Iterable[str] = (), quota: int | None = None) -> str:
    """Create a user; returns the stored name. UserError if it exists or is not local."""
    user = normalise_user(name)
    _require_local(conn, user, local_domains)
    if get_user(conn, user) is not None:
        raise UserError(f"the user {user} already exists")
    if quota is not None and quota < 0:
        raise UserError("the quota must be a positive number of octets")
    conn.execute(insert(schema.users).values(name=user, password_hash=password_hash,
                                             quota=quota, created=time.time()))
    Database.bump_generation(conn)
    return user


def _update(conn: Connection, name: str, **values) -> str:
    user = normalise_user(name)
    u = schema.users
    if conn.execute(update(u).where(u.c.name == user).values(**values)).rowcount == 0:
        raise UserError(f"no such user: {user}")
    Database.bump_generation(conn)
    return user


def set_password(conn: Connection, name: str, password_hash: str) -> str:
    """Replace the stored hash of an existing user."""
    return _update(conn, name, password_hash=password_hash)


def set_quota(conn: Connection, name: str, quota: int | None) -> str:
    """Set the mailbox quota in octets (None: unlimited)."""
    if quota is not None and quota < 0:
        raise UserError("the quota must be a positive number of octets")
    return _update(conn, name, quota=quota)


def remove_user(conn: Connection, name: str) -> str:
    """Delete a user with their mailboxes, messages, subscriptions and mailbox lock."""
    user = normalise_user(name)
    if get_user(conn, user) is None:
        raise UserError(f"no such user: {user}")
    mb, msg = schema.mailboxes, schema.messages
    box_ids = select(mb.c.id).where(mb.c.user == user).scalar_subquery()
    conn.execute(delete(msg).where(msg.c.mailbox_id.in_(box_ids)))
    conn.execute(delete(schema.expunged).where(schema.expunged.c.mailbox_id.in_(box_ids)))
    conn.execute(delete(mb).where(mb.c.user == user))
    conn.execute(delete(schema.subscriptions).where(schema.subscriptions.c.user == user))
    conn.execute(delete(schema.mailbox_locks).where(schema.mailbox_locks.c.user == user))
    conn.execute(delete(schema.users).where(schema.users.c.name == user))
    Database.bump_generation(conn)
    return user


def list_users(conn: Connection, domain: str | None = None) -> list[UserInfo]:
    """All users (or those of ``domain``), sorted by name."""
    u = schema.users
    query = select(u.c.name, u.c.quota, u.c.created).order_by(u.c.name)
    if domain:
        from .domains import _escape_like, normalise_domain

        query = query.where(u.c.name.like("%@" + _escape_like(normalise_domain(domain)),
                                          escape="\\"))
    return [UserInfo(*row) for row in conn.execute(query)]


def load_directory(conn: Connection) -> dict:
    """Everything the in-memory directory needs, in three queries.

    ``{"domains": set[str], "users": set[str], "mappings": {source: [targets]}}``.
    """
    from .mappings import list_mappings

    users = {row[0] for row in conn.execute(select(schema.users.c.name))}
    return {"domains": set(list_domains(conn)), "users": users,
            "mappings": list_mappings(conn)}
