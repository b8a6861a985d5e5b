"""``mailet-mta repository list [NAME] | show ID | remove ID | reprocess NAME | purge NAME``.

``reprocess`` restarts mails in ``--state`` or, by default, where each came from (a mail
of the ``error`` processor restarts in the processor it failed in, else ``root``: never
in ``error`` itself). ``purge`` deletes stored mails by age and/or count, as the
``repositories.retention`` bounds of the configuration do periodically.
"""

from __future__ import annotations

import argparse
from collections import Counter

from ..storage import repositories
from .common import CLIError, add_config_argument, open_blob_store, open_database
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


def _read(args, fn):
    _config, db = open_database(args)
    try:
        with db.transaction() as conn:
            return fn(conn)
    finally:
        db.engine.dispose()


def list_repository(args) -> int:
    if args.name is None:
        names = _read(args, repositories.names)
        print(format_table(["REPOSITORY", "MAILS"], names))
        return 0
    mails = _read(args, lambda conn: repositories.list_mails(conn, args.name))
    print(format_table(
        ["ID", "STORED", "STATE", "SENDER", "RECIPIENTS", "ERROR"],
        [(m.id, format_time(m.created), m.state, m.sender or "<>",
          ", ".join(m.recipients), (m.error_message or "")[:60]) for m in mails]))
    return 0


def show_mail(args) -> int:
    from sqlalchemy import select

    from ..storage import schema

    config, db = open_database(args)
    try:
        with db.transaction() as conn:
            mail = repositories.get(conn, args.id)
            if mail is None:
                raise CLIError(f"no stored mail with id {args.id} "
                               f"(see: mailet-mta repository list NAME)")
            blob = conn.execute(select(schema.blobs.c.size, schema.blobs.c.data)
                                .where(schema.blobs.c.id == mail.blob_id)).first()
    finally:
        db.engine.dispose()
    print(f"id:          {mail.id}\nrepository:  {mail.repository}\nname:        {mail.name}"
          f"\nstate:       {mail.state}\nstored:      {format_time(mail.created)}"
          f"\nsender:      <{mail.sender or ''}>\nrecipients:  {', '.join(mail.recipients)}"
          f"\nremote:      {mail.remote_host} [{mail.remote_addr}]"
          f"\nerror:       {mail.error_message or ''}")
    for key, value in sorted(mail.attributes.items()):
        print(f"attribute:   {key} = {value!r}")
    if blob is None:
        print("message:     (blob missing)")
        return 0
    source = open_blob_store(config).source(mail.blob_id, blob.size,
                                            None if blob.data is None else bytes(blob.data))
    print(f"size:        {blob.size} octets\n")
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
    if not _read(args, lambda conn: repositories.remove(conn, args.id)):
        raise CLIError(f"no stored mail with id {args.id}")
    print(f"mail {args.id} removed")
    return 0


def reprocess(args) -> int:
    config, db = open_database(args)
    processors = config.spoolmanager.processors
    if args.state is not None and processors and args.state not in processors:
        db.engine.dispose()
        raise CLIError(f"--state {args.state}: no such processor in "
                       f"{config.path or 'the configuration'} (processors: "
                       f"{', '.join(sorted(processors))})")
    try:
        with db.transaction() as conn:
            moved = repositories.reprocess(conn, args.name, args.state, args.id)
    finally:
        db.engine.dispose()
    if not moved:
        raise CLIError(f"nothing to reprocess in repository {args.name!r}"
                       + (f" with id {args.id}" if args.id is not None else ""))
    states = Counter(state for _name, state in moved)
    print(f"{len(moved)} mail(s) moved from {args.name} back to the spool: "
          + ", ".join(f"{n} in state {state}" for state, n in sorted(states.items())))
    return 0


def purge_repository(args) -> int:
    if args.older_than is None and args.keep is None:
        raise CLIError("repository purge: say what to delete: --older-than AGE and/or "
                       "--keep N (mailet-mta repository remove ID deletes one mail)")
    removed = _read(args, lambda conn: repositories.purge(conn, args.name,
                                                          args.older_than, args.keep))
    print(f"{removed} mail(s) purged from {args.name}")
    return 0
