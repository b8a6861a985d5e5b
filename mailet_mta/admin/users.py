"""User accounts: create (with a password hash the caller computed off the reactor),
change the password or the quota, delete, list with the mailbox usage."""

from __future__ import annotations

from sqlalchemy import func, select

from ..api import ConfigurationError, parse_size
from ..storage import schema
from ..storage import users as store
from ..storage.domains import DomainError, _escape_like
from ..storage.mailboxes import quota_usage
from .errors import Conflict, Invalid, NotFound

UNLIMITED = ("none", "unlimited", "0")


def normalise(name: str) -> str:
    """``Bob@Example.COM`` → ``bob@example.com``; Invalid for a malformed address."""
    try:
        return store.normalise_user(name)
    except store.UserError as exc:
        raise Invalid(str(exc)) from None


def parse_quota(value) -> int | None:
    """A quota as octets: an int, or text such as ``500m``; None/``none``/``unlimited``/0
    mean unlimited."""
    if value is None or (isinstance(value, str) and value.strip().lower() in UNLIMITED):
        return None
    if isinstance(value, bool):
        raise Invalid(f"quota {value!r} is not a size; write e.g. 500m, 2g or none")
    if isinstance(value, int):
        if value < 0:
            raise Invalid("the quota must be a positive number of octets")
        return value or None
    try:
        return parse_size(str(value), "quota")
    except ConfigurationError as exc:
        raise Invalid(str(exc)) from None


def _describe(conn, info: store.UserInfo) -> dict:
    return {"name": info.name, "used": quota_usage(conn, info.name), "quota": info.quota,
            "created": info.created}


def _domain_filter(query, domain: str | None):
    if not domain:
        return query
    from ..storage.domains import normalise_domain

    try:
        name = normalise_domain(domain)
    except DomainError as exc:
        raise Invalid(str(exc)) from None
    return query.where(schema.users.c.name.like("%@" + _escape_like(name), escape="\\"))


def list_users(conn, _config, domain: str | None = None, limit: int | None = None,
               offset: int = 0) -> list[dict]:
    """Users (of ``domain``) sorted by name, with the octets their mailboxes use."""
    u = schema.users
    query = _domain_filter(select(u.c.name, u.c.quota, u.c.created).order_by(u.c.name),
                           domain)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [_describe(conn, store.UserInfo(*row)) for row in conn.execute(query)]


def count_users(conn, _config, domain: str | None = None) -> int:
    return conn.execute(_domain_filter(select(func.count()).select_from(schema.users),
                                       domain)).scalar() or 0


def get_user(conn, _config, name: str) -> dict:
    info = store.get_user(conn, normalise(name))
    if info is None:
        raise NotFound(f"no such user: {normalise(name)}")
    return _describe(conn, info)


def create_user(conn, config, name: str, password_hash: str,
                quota: int | None = None) -> str:
    """Create ``name`` (its domain must be local); → the stored name."""
    user = normalise(name)
    if store.get_user(conn, user) is not None:
        raise Conflict(f"the user {user} already exists")
    try:
        return store.add_user(conn, user, password_hash, config.servernames, quota=quota)
    except store.UserError as exc:       # not a local domain
        raise Invalid(str(exc)) from None


def _existing(conn, name: str) -> str:
    user = normalise(name)
    if store.get_user(conn, user) is None:
        raise NotFound(f"no such user: {user}")
    return user


def set_password(conn, _config, name: str, password_hash: str) -> str:
    return store.set_password(conn, _existing(conn, name), password_hash)


def set_quota(conn, _config, name: str, quota: int | None) -> str:
    return store.set_quota(conn, _existing(conn, name), quota)


def delete_user(conn, _config, name: str) -> str:
    """Delete the user with their mailboxes and messages."""
    return store.remove_user(conn, _existing(conn, name))
