"""``mailet-mta aliases add|remove|list``: the recipient rewrite table.

James's ``AddAddressMapping``, ``AddDomainMapping``, ``AddRegexMapping`` and
``AddErrorMapping`` as one command: the SOURCE is ``user@domain``, ``*@domain`` (a
catch-all) or ``domain`` (every address of it), in a local domain; each TARGET is an
address (an alias, or a forward when it is in another domain), ``domain:<other>``,
``regex:<pattern>:<replacement>`` or ``error:<code> <text>``. ``aliases add old.example
new.example`` is the domain alias ``domain:new.example``. The running server sees a
change within a second; the SMTP RCPT check and delivery use the same table, together
with the ``mapping`` parameters of the configured RecipientRewriteTable mailets
(``aliases list`` shows both).
"""

from __future__ import annotations

from ..storage import mappings as store
from .common import CLIError, add_config_argument, open_database
from .tables import format_table


def register(subparsers) -> None:
    parser = subparsers.add_parser("aliases", help="manage aliases, forwards, catch-alls, "
                                                   "domain aliases and regex/error mappings")
    commands = parser.add_subparsers(dest="aliases_command", metavar="COMMAND",
                                     required=True)
    add = commands.add_parser("add", help="map SOURCE to one or more TARGETs")
    add.add_argument("source", help="user@domain, *@domain or domain")
    add.add_argument("targets", nargs="+", metavar="target",
                     help="user@domain, domain:<domain>, regex:<pattern>:<replacement> "
                          "or error:<code> <text>")
    add.set_defaults(func=add_alias)
    remove = commands.add_parser("remove", help="remove mappings of SOURCE (all of them "
                                                "when no TARGET is given)")
    remove.add_argument("source")
    remove.add_argument("targets", nargs="*", metavar="target")
    remove.set_defaults(func=remove_alias)
    listing = commands.add_parser("list", help="list the mappings (of SOURCE)")
    listing.add_argument("source", nargs="?")
    listing.set_defaults(func=list_aliases)
    for sub in (add, remove, listing):
        add_config_argument(sub)


def _run(args, fn):
    config, db = open_database(args)
    try:
        with db.transaction() as conn:
            return fn(conn, config)
    except store.MappingError as exc:
        raise CLIError(f"aliases {args.aliases_command}: {exc}") from None
    finally:
        db.engine.dispose()


def _domain_alias(source: str, target: str) -> str:
    """``new.example`` as the target of a domain source means ``domain:new.example``."""
    if "@" not in source and "@" not in target and ":" not in target:
        return f"domain:{target}"
    return target


def _directory(conn, config):
    """The directory the server would build now (for checks and listings)."""
    from ..directory import Directory, configured_mappings, load_tables

    directory = Directory(None, config.servernames, config.postmaster_address,
                          configured_mappings(config.spoolmanager))
    directory.apply(load_tables(conn))
    return directory


def add_alias(args) -> int:
    def add(conn, config):
        source = store.normalise_source(args.source)
        directory = _directory(conn, config)
        domain = store.source_domain(source)
        if not directory.is_local_domain(domain):
            raise store.MappingError(
                f"{domain} is not a local domain, so mail for {source} never reaches the "
                f"rewrite table; add it first (mailet-mta domains add {domain}) or list "
                f"it in servernames")
        added = [store.add_mapping(conn, source, _domain_alias(source, t))[1]
                 for t in args.targets]
        return source, added, _directory(conn, config)

    source, added, directory = _run(args, add)
    for target in added:
        print(f"alias {source} -> {target} added")
    if "@" in source and not source.startswith("*@") \
            and not any(t.lower().startswith("error:") for t in added) \
            and not directory.is_local_email(source):
        print(f"note: no target of {source} is deliverable yet (a user here or an "
              f"address elsewhere): mail to it is refused at RCPT until one is")
    return 0


def remove_alias(args) -> int:
    def remove(conn, _config):
        if not args.targets:
            source, count = store.remove_source(conn, args.source)
            return [f"{count} mapping(s) of {source} removed"]
        return [f"alias {s} -> {t} removed" for s, t in (
            store.remove_mapping(conn, args.source,
                                 _domain_alias(store.normalise_source(args.source), t))
            for t in args.targets)]

    for line in _run(args, remove):
        print(line)
    return 0


def list_aliases(args) -> int:
    def rows(conn, config):
        wanted = store.normalise_source(args.source) if args.source else None
        directory = _directory(conn, config)
        out = []
        for origin, table in (("configuration", directory.configured),
                              ("database", directory.mappings)):
            for source, targets in sorted(table.items()):
                if wanted is None or source == wanted:
                    out += [(source, target, _kind(directory, source, target), origin)
                            for target in targets]
        return out

    print(format_table(["SOURCE", "TARGET", "KIND", "FROM"], _run(args, rows)))
    return 0


def _kind(directory, source: str, target: str) -> str:
    """The mapping's kind; an address in another domain is a forward."""
    kind = store.mapping_kind(source, target)
    if kind == "address" and "@" in target \
            and not directory.is_local_domain(target.rpartition("@")[2]):
        return "forward"
    return kind
