"""The RecipientRewriteTable: address and domain mappings (the ``mappings`` table).

A source is ``local@domain``, ``*@domain`` or a bare ``domain`` (a domain alias). A
target is an address, ``regex:…``, ``error:code text`` or ``domain:other``. Sources
are stored lower-case with their domain in IDNA form; targets are stored as given
(addresses normalised the same way). Every change bumps the directory generation.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from ..address import MailAddress, MailAddressError
from ..api import MappingError
from . import schema
from .db import Database
from .domains import DomainError, normalise_domain

__all__ = ["MappingError", "normalise_source", "add_mapping", "remove_mapping",
           "remove_source", "list_mappings", "mapping_kind", "source_domain"]

_PREFIXES = ("regex:", "error:", "domain:")


def normalise_source(source: str) -> str:
    source = (source or "").strip()
    try:
        if "@" not in source:
            return normalise_domain(source)
        local, _, domain = source.rpartition("@")
        if local == "*":
            return "*@" + normalise_domain(domain)
        addr = MailAddress.parse(source)
        return f"{addr.local_part.lower()}@{addr.domain}"
    except (MailAddressError, DomainError) as exc:
        raise MappingError(f"{source!r} is not a mapping source "
                           f"(user@domain, *@domain or domain): {exc}") from None


def _normalise_target(target: str) -> str:
    """A target checked as the rewrite table will read it; addresses normalised."""
    from mailets.rewrite_mappings import check_target

    target = (target or "").strip()
    if not target:
        raise MappingError("the mapping target is empty")
    try:
        check_target(target)
    except ValueError as exc:
        raise MappingError(f"{exc}; a target is user@domain, regex:<pattern>:"
                           f"<replacement>, error:<code> <text> or domain:<domain>") from None
    if target.lower().startswith(_PREFIXES):
        return target
    try:
        addr = MailAddress.parse(target)
    except MailAddressError:
        return target               # alias:/forward:… forms, checked above
    return f"{addr.local_part}@{addr.domain}"


def source_domain(source: str) -> str:
    """The domain a normalised source belongs to (``*@d`` and ``u@d`` → ``d``)."""
    return source.rpartition("@")[2]


def mapping_kind(source: str, target: str) -> str:
    """What a mapping does, in James's words: address, domain, regex, error, or
    catch-all (a ``*@domain`` source)."""
    lower = target.lower()
    for prefix, kind in (("regex:", "regex"), ("error:", "error"), ("domain:", "domain")):
        if lower.startswith(prefix):
            return kind
    return "catch-all" if source.startswith("*@") else "address"


def add_mapping(conn: Connection, source: str, target: str) -> tuple[str, str]:
    src, tgt = normalise_source(source), _normalise_target(target)
    m = schema.mappings
    if conn.execute(select(m.c.id).where((m.c.source == src) & (m.c.target == tgt))).first():
        raise MappingError(f"the mapping {src} -> {tgt} already exists")
    conn.execute(insert(m).values(source=src, target=tgt))
    Database.bump_generation(conn)
    return src, tgt


def remove_mapping(conn: Connection, source: str, target: str) -> tuple[str, str]:
    src, tgt = normalise_source(source), _normalise_target(target)
    m = schema.mappings
    if conn.execute(delete(m).where((m.c.source == src) & (m.c.target == tgt))).rowcount == 0:
        raise MappingError(f"no mapping {src} -> {tgt}")
    Database.bump_generation(conn)
    return src, tgt


def remove_source(conn: Connection, source: str) -> tuple[str, int]:
    """Remove every mapping of ``source``; (normalised source, how many)."""
    src = normalise_source(source)
    m = schema.mappings
    count = conn.execute(delete(m).where(m.c.source == src)).rowcount
    if count == 0:
        raise MappingError(f"no mapping for {src}")
    Database.bump_generation(conn)
    return src, count


def list_mappings(conn: Connection) -> dict[str, list[str]]:
    """{source: [targets in insertion order]}."""
    m = schema.mappings
    out: dict[str, list[str]] = {}
    for src, tgt in conn.execute(select(m.c.source, m.c.target).order_by(m.c.id)):
        out.setdefault(src, []).append(tgt)
    return out
