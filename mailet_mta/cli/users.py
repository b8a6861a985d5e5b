"""``mailet-mta users add|passwd|remove|list|quota``: user accounts.

Passwords are read from a prompt or, with ``--password-stdin``, from the first line
of standard input — never from the command line, where other users could see them.
"""

from __future__ import annotations

from .common import CLIError, add_config_argument, admin_call, read_password
from .tables import format_table, format_time


def register(subparsers) -> None:
    parser = subparsers.add_parser("users", help="manage user accounts")
    commands = parser.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    add = commands.add_parser("add", help="create a user (user@domain)")
    add.add_argument("user")
    add.add_argument("--quota", help="mailbox quota, e.g. 500m (default: unlimited)")
    add.set_defaults(func=add_user)
    passwd = commands.add_parser("passwd", help="change a user's password")
    passwd.add_argument("user")
    passwd.set_defaults(func=change_password)
    for sub in (add, passwd):
        sub.add_argument("--password-stdin", action="store_true",
                         help="read the password from the first line of standard input")
    remove = commands.add_parser("remove", help="delete a user and their mailboxes")
    remove.add_argument("user")
    remove.set_defaults(func=remove_user)
    listing = commands.add_parser("list", help="list users")
    listing.add_argument("--domain", help="only users of this domain")
    listing.set_defaults(func=list_users)
    quota = commands.add_parser("quota", help="set a user's quota ('none' = unlimited)")
    quota.add_argument("user")
    quota.add_argument("size")
    quota.set_defaults(func=set_quota)
    for sub in (add, passwd, remove, listing, quota):
        add_config_argument(sub)


def _quota(text: str | None) -> int | None:
    from ..admin import AdminError
    from ..admin import users as admin

    try:
        return admin.parse_quota(text)
    except AdminError as exc:
        raise CLIError(exc.message) from None


def _check_name(name: str) -> str:
    from ..admin import AdminError
    from ..admin import users as admin

    try:
        return admin.normalise(name)
    except AdminError as exc:
        raise CLIError(exc.message) from None


def add_user(args) -> int:
    from ..admin import users as admin
    from ..storage import passwords

    _check_name(args.user)
    quota = _quota(args.quota)
    password_hash = passwords.hash_password(read_password(args))
    name = admin_call(args, admin.create_user, args.user, password_hash, quota)
    print(f"user {name} added")
    return 0


def change_password(args) -> int:
    from ..admin import users as admin
    from ..storage import passwords

    _check_name(args.user)
    password_hash = passwords.hash_password(read_password(args, "New password: "))
    name = admin_call(args, admin.set_password, args.user, password_hash)
    print(f"password of {name} changed")
    return 0


def remove_user(args) -> int:
    from ..admin import users as admin

    name = admin_call(args, admin.delete_user, args.user)
    print(f"user {name} removed with their mailboxes")
    return 0


def set_quota(args) -> int:
    from ..admin import users as admin

    quota = _quota(args.size)
    name = admin_call(args, admin.set_quota, args.user, quota)
    print(f"quota of {name} set to {'unlimited' if quota is None else f'{quota} octets'}")
    return 0


def list_users(args) -> int:
    from ..admin import users as admin

    rows = admin_call(args, admin.list_users, args.domain)
    print(format_table(["USER", "USED", "QUOTA", "CREATED"],
                       [(u["name"], u["used"], "unlimited" if u["quota"] is None
                         else u["quota"], format_time(u["created"])) for u in rows]))
    return 0
