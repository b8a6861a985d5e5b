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

from .common import add_config_argument, admin_call
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


def _call(args, fn, *fn_args):
    return admin_call(args, fn, *fn_args, prefix=f"aliases {args.aliases_command}: ")


def add_alias(args) -> int:
    from ..admin import mappings as admin

    result = _call(args, admin.add_mappings, args.source, args.targets)
    source = result["source"]
    for target in result["added"]:
        print(f"alias {source} -> {target} added")
    if not result["deliverable"]:
        print(f"note: no target of {source} is deliverable yet (a user here or an "
              f"address elsewhere): mail to it is refused at RCPT until one is")
    return 0


def remove_alias(args) -> int:
    from ..admin import mappings as admin

    removed = _call(args, admin.remove_mappings, args.source, args.targets)
    if not args.targets:
        print(f"{len(removed)} mapping(s) of {removed[0]['source']} removed")
    for item in removed if args.targets else ():
        print(f"alias {item['source']} -> {item['target']} removed")
    return 0


def list_aliases(args) -> int:
    from ..admin import mappings as admin

    rows = _call(args, admin.list_mappings, args.source)
    print(format_table(["SOURCE", "TARGET", "KIND", "FROM"],
                       [(m["source"], m["target"], m["kind"], m["origin"]) for m in rows]))
    return 0
