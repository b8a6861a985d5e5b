"""Local mail domains: the ``domains`` table together with the configured servernames.

A domain named in ``servernames`` is local whatever the table says; the operations
here say so instead of pretending to add or remove it.
"""

from __future__ import annotations

from sqlalchemy import select

from ..storage import domains as store
from ..storage import schema
from .errors import Conflict, Invalid, NotFound

TABLE, CONFIG = "domains table", "servernames (config)"


def where(config) -> str:
    """The file the configuration came from, for messages."""
    return config.path or "the embedded default configuration"


def normalise(name: str) -> str:
    """The stored form of ``name``; Invalid when it is no domain name."""
    try:
        return store.normalise_domain(name)
    except store.DomainError as exc:
        raise Invalid(str(exc)) from None


def configured(config, name: str) -> bool:
    """Whether ``name`` (stored form) is listed in the configuration's servernames."""
    return name in {n.strip().lower() for n in config.servernames}


def list_domains(conn, config) -> list[dict]:
    """Every local domain, sorted: ``{"name", "source", "created"}`` (created is None
    for a domain that only the configuration names)."""
    d = schema.domains
    rows = conn.execute(select(d.c.name, d.c.created).order_by(d.c.name)).all()
    out = [{"name": name, "source": TABLE, "created": created} for name, created in rows]
    stored = {name for name, _ in rows}
    out += [{"name": name.lower(), "source": CONFIG, "created": None}
            for name in config.servernames if name.lower() not in stored]
    return sorted(out, key=lambda item: (item["name"], item["source"]))


def add_domain(conn, config, name: str) -> str:
    """Add ``name`` to the domains table; → its stored form."""
    domain = normalise(name)
    if configured(config, domain):
        raise Conflict(f"the domain {domain} is local already: servernames in "
                       f"{where(config)} lists it (servernames come from the "
                       f"configuration); nothing added")
    if store.domain_exists(conn, domain):
        raise Conflict(f"the domain {domain} already exists")
    return store.add_domain(conn, domain)


def remove_domain(conn, config, name: str, force: bool = False) -> dict:
    """Remove ``name`` from the domains table (refused while it has users, unless
    ``force``); → ``{"name", "still_local"}``, still_local when servernames lists it."""
    domain = normalise(name)
    if not store.domain_exists(conn, domain):
        if configured(config, domain):
            raise Conflict(f"the domain {domain} is not in the domains table: it comes "
                           f"from servernames in {where(config)}; remove it there and "
                           f"reload (SIGHUP or systemctl reload mailet-mta)")
        raise NotFound(f"the domain {domain} does not exist")
    try:
        store.remove_domain(conn, domain, force=force)
    except store.DomainError as exc:     # users of it remain
        raise Conflict(str(exc)) from None
    return {"name": domain, "still_local": configured(config, domain)}
