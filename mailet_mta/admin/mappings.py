"""Aliases and address mappings (James's RecipientRewriteTable): the ``mappings`` table,
shown together with the ``mapping`` parameters of the configured rewrite mailets.

A source is ``user@domain``, ``*@domain`` (a catch-all) or ``domain`` (every address of
it), in a local domain; a target is an address (an alias, or a forward when it is in
another domain), ``domain:<other>``, ``regex:<pattern>:<replacement>`` or
``error:<code> <text>``. A bare domain target of a domain source is the domain alias
``domain:<target>``.
"""

from __future__ import annotations

from sqlalchemy import select

from ..storage import mappings as store
from ..storage import schema
from .errors import Conflict, Invalid, NotFound


def directory(conn, config):
    """The directory the server would build now (for checks and listings)."""
    from ..directory import Directory, configured_mappings, load_tables

    found = Directory(None, config.servernames, config.postmaster_address,
                      configured_mappings(config.spoolmanager))
    found.apply(load_tables(conn))
    return found


def normalise_source(source: str) -> str:
    try:
        return store.normalise_source(source)
    except store.MappingError as exc:
        raise Invalid(str(exc)) from None


def domain_alias(source: str, target: str) -> str:
    """``new.example`` as the target of a domain source means ``domain:new.example``."""
    if "@" not in source and "@" not in target and ":" not in target:
        return f"domain:{target}"
    return target


def _normalise_target(source: str, target: str) -> str:
    try:
        return store._normalise_target(domain_alias(source, target))
    except store.MappingError as exc:
        raise Invalid(str(exc)) from None


def kind(found, source: str, target: str) -> str:
    """The mapping's kind; an address in another domain is a forward."""
    what = store.mapping_kind(source, target)
    if what == "address" and "@" in target \
            and not found.is_local_domain(target.rpartition("@")[2]):
        return "forward"
    return what


def list_mappings(conn, config, source: str | None = None) -> list[dict]:
    """``{"source", "target", "kind", "origin"}`` of every mapping (of ``source``):
    the configuration's first, then the table's, each sorted by source."""
    wanted = normalise_source(source) if source else None
    found = directory(conn, config)
    out = []
    for origin, table in (("configuration", found.configured),
                          ("database", found.mappings)):
        for src, targets in sorted(table.items()):
            if wanted is None or src == wanted:
                out += [{"source": src, "target": t, "kind": kind(found, src, t),
                         "origin": origin} for t in targets]
    return out


def _exists(conn, source: str, target: str) -> bool:
    m = schema.mappings
    return conn.execute(select(m.c.id).where((m.c.source == source) & (m.c.target == target))
                        ).first() is not None


def add_mappings(conn, config, source: str, targets: list[str]) -> dict:
    """Map ``source`` to each of ``targets``; → ``{"source", "added", "deliverable"}``
    where deliverable says whether mail to an address source now reaches someone."""
    src = normalise_source(source)
    if not targets:
        raise Invalid(f"give at least one target for {src}")
    found = directory(conn, config)
    domain = store.source_domain(src)
    if not found.is_local_domain(domain):
        raise Invalid(f"{domain} is not a local domain, so mail for {src} never reaches "
                      f"the rewrite table; add it first (mailet-mta domains add {domain}) "
                      f"or list it in servernames")
    added = []
    for target in targets:
        tgt = _normalise_target(src, target)
        if _exists(conn, src, tgt) or tgt in added:
            raise Conflict(f"the mapping {src} -> {tgt} already exists")
        added.append(store.add_mapping(conn, src, tgt)[1])
    deliverable = ("@" not in src or src.startswith("*@")
                   or any(t.lower().startswith("error:") for t in added)
                   or directory(conn, config).is_local_email(src))
    return {"source": src, "added": added, "deliverable": deliverable}


def remove_mappings(conn, _config, source: str, targets: list[str] | None = None
                    ) -> list[dict]:
    """Remove the given mappings of ``source`` (all of them when ``targets`` is empty);
    → the removed ``{"source", "target"}``."""
    src = normalise_source(source)
    m = schema.mappings
    if not targets:
        rows = conn.execute(select(m.c.target).where(m.c.source == src)
                            .order_by(m.c.id)).scalars().all()
        if not rows:
            raise NotFound(f"no mapping for {src}")
        store.remove_source(conn, src)
        return [{"source": src, "target": t} for t in rows]
    removed = []
    for target in targets:
        tgt = _normalise_target(src, target)
        if not _exists(conn, src, tgt):
            raise NotFound(f"no mapping {src} -> {tgt}")
        store.remove_mapping(conn, src, tgt)
        removed.append({"source": src, "target": tgt})
    return removed
