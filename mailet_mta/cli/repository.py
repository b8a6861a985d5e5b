"""``mailet-mta repository list [NAME] | show ID | remove ID | reprocess NAME | purge NAME``.

``reprocess`` restarts mails in ``--state`` or, by default, where each came from (a mail
of the ``error`` processor restarts in the processor it failed in, else ``root``: never
in ``error`` itself). ``purge`` deletes stored mails by age and/or count, as the
``repositories.retention`` bounds of the configuration do periodically.
"""

from __future__ import annotations

import argparse
from collections import Counter

from .common import CLIError, add_config_argument, admin_call, load_config, open_blob_store
from .tables import format_table, format_time


def register(subparsers) -> None:
    parser = subparsers.add_parser("repository",
                                   help="inspect mail repositories (error, relay-denied, …)")
    commands = parser.add_subparsers(dest="repository_command", metavar="COMMAND",
                                     required=True)
    listing = commands.add_parser("list", help="list repositories, or the mails of one")
    listing.add_argument("name", nargs="?")
    listing.set_defaults(func=list_repository)
    show = commands.add_parser("show", help="show one stored mail and its headers")
    show.add_argument("id", type=int)
    show.add_argument("--body", action="store_true", help="print the whole message")
    show.set_defaults(func=show_mail)
    remove = commands.add_parser("remove", help="delete one stored mail")
    remove.add_argument("id", type=int)
    remove.set_defaults(func=remove_mail)
    again = commands.add_parser("reprocess",
                                help="send the mails of a repository back to the spool")
    again.add_argument("name")
    again.add_argument("--state", help="processor to restart in (default: for a mail "
                                       "of the error processor, the processor it failed "
                                       "in, else root; for others the state each mail "
                                       "was stored with)")
    again.add_argument("--id", type=int, help="only this mail")
    again.set_defaults(func=reprocess)
    purge = commands.add_parser("purge", help="delete the old mails of a repository")
    purge.add_argument("name")
    purge.add_argument("--older-than", metavar="AGE", type=_age,
                       help="only mails stored longer ago than AGE (30d, 12h, 90 minutes)")
    purge.add_argument("--keep", metavar="N", type=_count,
                       help="keep the newest N mails, delete the rest")
    purge.set_defaults(func=purge_repository)
    for sub in (listing, show, remove, again, purge):
        add_config_argument(sub)


def _age(text: str) -> float:
    from ..api import ConfigurationError, parse_duration

    try:
        seconds = parse_duration(text, "--older-than")
    except ConfigurationError:
        seconds = -1
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age; write e.g. 30d, 12h "
                                         f"or 90 minutes")
    return seconds


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of mails (0 or more)")
    return int(text)


def list_repository(args) -> int:
    from ..admin import repositories as admin

    if args.name is None:
        names = admin_call(args, admin.list_repositories)
        print(format_table(["REPOSITORY", "MAILS"], [(r["name"], r["mails"]) for r in names]))
        return 0
    mails = admin_call(args, admin.list_mails, args.name)
    print(format_table(
        ["ID", "STORED", "STATE", "SENDER", "RECIPIENTS", "ERROR"],
        [(m["id"], format_time(m["created"]), m["state"], m["sender"] or "<>",
          ", ".join(m["recipients"]), (m["error"] or "")[:60]) for m in mails]))
    return 0


def show_mail(args) -> int:
    from ..admin import repositories as admin

    def read(conn, config):
        mail = admin.get_mail(conn, config, args.id)
        _summary, source = admin.message_source(conn, config, open_blob_store(config),
                                                args.id)
        return mail, source

    mail, source = admin_call(args, read)
    print(f"id:          {mail['id']}\nrepository:  {mail['repository']}\n"
          f"name:        {mail['name']}\nstate:       {mail['state']}\n"
          f"stored:      {format_time(mail['created'])}\n"
          f"sender:      <{mail['sender'] or ''}>\n"
          f"recipients:  {', '.join(mail['recipients'])}\n"
          f"remote:      {mail['remote_host']} [{mail['remote_addr']}]\n"
          f"error:       {mail['error'] or ''}")
    for key, value in sorted(mail["attributes"].items()):
        print(f"attribute:   {key} = {value!r}")
    if source is None:
        print("message:     (blob missing)")
        return 0
    print(f"size:        {source.size} octets\n")
    with source.open() as f:
        if args.body:
            data = f.read()
        else:
            lines = []
            for line in f:
                if line in (b"\r\n", b"\n"):
                    break
                lines.append(line)
            data = b"".join(lines)
    print(data.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n"))
    return 0


def remove_mail(args) -> int:
    from ..admin import repositories as admin

    admin_call(args, admin.delete_mail, args.id)
    print(f"mail {args.id} removed")
    return 0


def reprocess(args) -> int:
    from ..admin import AdminError
    from ..admin import repositories as admin

    if args.state is not None:
        try:
            admin.check_processor(load_config(args), args.state)
        except AdminError as exc:
            raise CLIError("--state " + exc.message.removeprefix("processor ")
                           .replace(repr(args.state), args.state, 1)) from None
    moved = admin_call(args, admin.reprocess, args.name, args.state, args.id)
    states = Counter(item["state"] for item in moved)
    print(f"{len(moved)} mail(s) moved from {args.name} back to the spool: "
          + ", ".join(f"{n} in state {state}" for state, n in sorted(states.items())))
    return 0


def purge_repository(args) -> int:
    from ..admin import repositories as admin

    if args.older_than is None and args.keep is None:
        raise CLIError("repository purge: say what to delete: --older-than AGE and/or "
                       "--keep N (mailet-mta repository remove ID deletes one mail)")
    removed = admin_call(args, admin.purge, args.name, args.older_than, args.keep)
    print(f"{removed} mail(s) purged from {args.name}")
    return 0
