"""``mailet-mta webadmin token create NAME | list | revoke NAME``: the bearer tokens of
the admin HTTP API (see docs/webadmin.md). ``create`` prints the token once; only its
hash is stored, so a lost token is revoked and a new one created."""

from __future__ import annotations

from .common import add_config_argument, admin_call
from .tables import format_table, format_time


def register(subparsers) -> None:
    parser = subparsers.add_parser("webadmin", help="the admin HTTP API: its tokens")
    groups = parser.add_subparsers(dest="webadmin_command", metavar="COMMAND",
                                   required=True)
    token = groups.add_parser("token", help="create, list and revoke bearer tokens")
    commands = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = commands.add_parser("create", help="create a token and print it (once)")
    create.add_argument("name", help="who or what uses it; logged with every change")
    create.set_defaults(func=create_token)
    listing = commands.add_parser("list", help="list the tokens (names, not the tokens)")
    listing.set_defaults(func=list_tokens)
    revoke = commands.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("name")
    revoke.set_defaults(func=revoke_token)
    for sub in (create, listing, revoke):
        add_config_argument(sub)


def create_token(args) -> int:
    from ..admin import tokens as admin

    print(admin_call(args, admin.create_token, args.name))
    return 0


def list_tokens(args) -> int:
    from ..admin import tokens as admin

    rows = admin_call(args, admin.list_tokens)
    print(format_table(["NAME", "CREATED"], [(t["name"], format_time(t["created"]))
                                             for t in rows]))
    return 0


def revoke_token(args) -> int:
    from ..admin import tokens as admin

    name = admin_call(args, admin.revoke_token, args.name)
    print(f"token {name} revoked")
    return 0
