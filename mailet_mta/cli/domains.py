"""``mailet-mta domains add|remove|list``: the local mail domains."""

from __future__ import annotations

from .common import add_config_argument, admin_call
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


def add_domain(args) -> int:
    from ..admin import domains as admin

    name = admin_call(args, admin.add_domain, args.name)
    print(f"domain {name} added")
    return 0


def remove_domain(args) -> int:
    from ..admin import domains as admin

    result = admin_call(args, admin.remove_domain, args.name, args.force)
    still = (f"; it stays local: servernames in {admin.where(args.loaded_config)} lists it"
             if result["still_local"] else "")
    print(f"domain {result['name']} removed{still}")
    return 0


def list_domains(args) -> int:
    from ..admin import domains as admin

    rows = admin_call(args, admin.list_domains)
    print(format_table(["DOMAIN", "SOURCE", "ADDED"],
                       [(d["name"], d["source"], format_time(d["created"]) if d["created"]
                         else "") for d in rows]))
    return 0
