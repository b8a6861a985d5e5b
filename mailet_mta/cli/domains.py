"""``mailet-mta domains add|remove|list``: the local mail domains."""

from __future__ import annotations

from ..storage import domains as store
from .common import CLIError, add_config_argument, load_config, open_database
from .tables import format_table, format_time


def register(subparsers) -> None:
    parser = subparsers.add_parser("domains", help="manage local mail domains")
    commands = parser.add_subparsers(dest="domains_command", metavar="COMMAND",
                                     required=True)
    add = commands.add_parser("add", help="add a local domain")
    add.add_argument("name")
    add.set_defaults(func=add_domain)
    remove = commands.add_parser("remove", help="remove a local domain")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true",
                        help="remove it even though users of it exist")
    remove.set_defaults(func=remove_domain)
    listing = commands.add_parser("list", help="list the domains")
    listing.set_defaults(func=list_domains)
    for sub in (add, remove, listing):
        add_config_argument(sub)


def _run(args, fn):
    config, db = open_database(args)
    try:
        with db.transaction() as conn:
            return fn(conn)
    except store.DomainError as exc:
        name = _servername(config, args.name)
        if name is not None:
            raise CLIError(f"the domain {name} is not in the domains table: it comes from "
                           f"servernames in {_where(config)}; remove it there and reload "
                           f"(SIGHUP or systemctl reload mailet-mta)") from None
        raise CLIError(str(exc)) from None
    finally:
        db.engine.dispose()


def _servername(config, name: str) -> str | None:
    """``name`` in its stored form when the configuration's servernames list it."""
    try:
        domain = store.normalise_domain(name)
    except store.DomainError as exc:
        raise CLIError(str(exc)) from None
    listed = {n.strip().lower() for n in config.servernames}
    return domain if domain in listed else None


def _where(config) -> str:
    return config.path or "the embedded default configuration"


def add_domain(args) -> int:
    config = load_config(args)
    name = _servername(config, args.name)
    if name is not None:
        raise CLIError(f"the domain {name} is local already: servernames in "
                       f"{_where(config)} lists it (servernames come from the "
                       f"configuration); nothing added")
    name = _run(args, lambda conn: store.add_domain(conn, args.name))
    print(f"domain {name} added")
    return 0


def remove_domain(args) -> int:
    name = _run(args, lambda conn: store.remove_domain(conn, args.name, force=args.force))
    config = load_config(args)
    still = (f"; it stays local: servernames in {_where(config)} lists it"
             if _servername(config, name) else "")
    print(f"domain {name} removed{still}")
    return 0


def list_domains(args) -> int:
    config, db = open_database(args)
    try:
        with db.transaction() as conn:
            from sqlalchemy import select

            from ..storage import schema

            rows = conn.execute(select(schema.domains.c.name, schema.domains.c.created)
                                .order_by(schema.domains.c.name)).all()
    finally:
        db.engine.dispose()
    table = [(name, "domains table", format_time(created)) for name, created in rows]
    stored = {name for name, _ in rows}
    table += [(name, "servernames (config)", "") for name in config.servernames
              if name.lower() not in stored]
    print(format_table(["DOMAIN", "SOURCE", "ADDED"], sorted(table)))
    return 0
