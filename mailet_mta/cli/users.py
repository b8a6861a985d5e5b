"""``mailet-mta users add|passwd|remove|list|quota``: user accounts.

Passwords are read from a prompt or, with ``--password-stdin``, from the first line
of standard input — never from the command line, where other users could see them.
"""

from __future__ import annotations

from ..api import ConfigurationError, parse_size
from ..storage import passwords
from ..storage import users as store
from .common import CLIError, add_config_argument, open_database, read_password
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
    if text is None or text.strip().lower() in ("none", "unlimited", "0"):
        return None
    try:
        return parse_size(text, "quota")
    except ConfigurationError as exc:
        raise CLIError(str(exc)) from None


def _run(args, fn):
    config, db = open_database(args)
    try:
        with db.transaction() as conn:
            return fn(conn, config)
    except store.UserError as exc:
        raise CLIError(str(exc)) from None
    finally:
        db.engine.dispose()


def _check_name(name: str) -> str:
    try:
        return store.normalise_user(name)
    except store.UserError as exc:
        raise CLIError(str(exc)) from None


def add_user(args) -> int:
    _check_name(args.user)
    quota = _quota(args.quota)
    password_hash = passwords.hash_password(read_password(args))
    name = _run(args, lambda conn, config: store.add_user(
        conn, args.user, password_hash, config.servernames, quota=quota))
    print(f"user {name} added")
    return 0


def change_password(args) -> int:
    _check_name(args.user)
    password_hash = passwords.hash_password(read_password(args, "New password: "))
    name = _run(args, lambda conn, _c: store.set_password(conn, args.user, password_hash))
    print(f"password of {name} changed")
    return 0


def remove_user(args) -> int:
    name = _run(args, lambda conn, _c: store.remove_user(conn, args.user))
    print(f"user {name} removed with their mailboxes")
    return 0


def set_quota(args) -> int:
    quota = _quota(args.size)
    name = _run(args, lambda conn, _c: store.set_quota(conn, args.user, quota))
    print(f"quota of {name} set to {'unlimited' if quota is None else f'{quota} octets'}")
    return 0


def list_users(args) -> int:
    from ..storage.domains import DomainError
    from ..storage.mailboxes import quota_usage

    def rows(conn, _config):
        try:
            found = store.list_users(conn, args.domain)
        except DomainError as exc:
            raise CLIError(str(exc)) from None
        return [(u.name, quota_usage(conn, u.name),
                 "unlimited" if u.quota is None else u.quota, format_time(u.created))
                for u in found]

    print(format_table(["USER", "USED", "QUOTA", "CREATED"], _run(args, rows)))
    return 0
