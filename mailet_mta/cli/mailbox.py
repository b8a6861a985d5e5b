"""``mailet-mta mailbox list USER``: the messages in a user's mailboxes."""

from __future__ import annotations

from .common import CLIError, add_config_argument, open_database
from .tables import format_table, format_time


def register(subparsers) -> None:
    parser = subparsers.add_parser("mailbox", help="inspect user mailboxes")
    commands = parser.add_subparsers(dest="mailbox_command", metavar="COMMAND",
                                     required=True)
    listing = commands.add_parser("list", help="list the messages of a user")
    listing.add_argument("user")
    listing.add_argument("--folder", default="INBOX")
    listing.set_defaults(func=list_mailbox)
    add_config_argument(listing)


def list_mailbox(args) -> int:
    from sqlalchemy import select

    from ..storage import mailboxes, schema
    from ..storage.users import UserError, get_user, normalise_user

    try:
        user = normalise_user(args.user)
    except UserError as exc:
        raise CLIError(str(exc)) from None
    _config, db = open_database(args)
    try:
        with db.transaction() as conn:
            if get_user(conn, user) is None:
                raise CLIError(f"no such user: {user} (see: mailet-mta users list)")
            summary = mailboxes.mailbox_summary(conn, user)
            mb, msg = schema.mailboxes, schema.messages
            rows = conn.execute(
                select(msg.c.uid, msg.c.size, msg.c.internal_date, msg.c.uidl)
                .select_from(msg.join(mb, msg.c.mailbox_id == mb.c.id))
                .where((mb.c.user == user) & (mb.c.name == args.folder))
                .order_by(msg.c.uid)).all()
    finally:
        db.engine.dispose()
    count = sum(c for _n, c, _o in summary if _n == args.folder)
    octets = sum(o for _n, _c, o in summary if _n == args.folder)
    print(f"{user} {args.folder}: {count} messages, {octets} octets")
    print(format_table(["#", "UID", "SIZE", "RECEIVED", "UIDL"],
                       [(i + 1, uid, size, format_time(date), uidl)
                        for i, (uid, size, date, uidl) in enumerate(rows)]))
    return 0
