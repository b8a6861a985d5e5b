"""Local mail domains (James's DomainList): the ``domains`` table.

Domain names are stored lower-case in their ASCII (IDNA) form, exactly as
:class:`~mailet_mta.address.MailAddress` normalises them, so ``Bücher.Example`` and
``xn--bcher-kva.example`` are the same domain. Every change bumps the directory
generation in the same transaction so running servers reload their directory.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from ..address import MailAddress, MailAddressError
from . import schema
from .db import Database

__all__ = ["DomainError", "normalise_domain", "add_domain", "remove_domain",
           "list_domains", "domain_exists"]


class DomainError(ValueError):
    """A domain operation that cannot be done; the message says why."""


def normalise_domain(name: str) -> str:
    """The stored form of ``name``: lower-case ASCII (IDNA); DomainError if invalid."""
    name = (name or "").strip()
    if not name or name.startswith("["):
        raise DomainError(f"{name!r} is not a domain name")
    try:
        return MailAddress("postmaster", name).domain
    except MailAddressError as exc:
        raise DomainError(f"{name!r} is not a valid domain name: {exc}") from None


def domain_exists(conn: Connection, name: str) -> bool:
    d = schema.domains
    return conn.execute(select(d.c.name).where(d.c.name == normalise_domain(name))
                        ).first() is not None


def add_domain(conn: Connection, name: str) -> str:
    """Add a local domain; returns its stored form. DomainError if it exists."""
    domain = normalise_domain(name)
    if domain_exists(conn, domain):
        raise DomainError(f"the domain {domain} already exists")
    conn.execute(insert(schema.domains).values(name=domain, created=time.time()))
    Database.bump_generation(conn)
    return domain


def remove_domain(conn: Connection, name: str, force: bool = False) -> str:
    """Remove a domain. Refused while users of it exist unless ``force``."""
    domain = normalise_domain(name)
    if not domain_exists(conn, domain):
        raise DomainError(f"the domain {domain} does not exist")
    u = schema.users
    count = conn.execute(select(func.count()).select_from(u)
                         .where(u.c.name.like("%@" + _escape_like(domain), escape="\\"))
                         ).scalar()
    if count and not force:
        raise DomainError(f"the domain {domain} still has {count} user(s); "
                          f"remove them first")
    conn.execute(delete(schema.domains).where(schema.domains.c.name == domain))
    Database.bump_generation(conn)
    return domain


def list_domains(conn: Connection) -> list[str]:
    """All domains in the table, sorted."""
    d = schema.domains
    return [row[0] for row in conn.execute(select(d.c.name).order_by(d.c.name))]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
