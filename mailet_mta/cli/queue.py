"""``mailet-mta queue``: look at and steer the outgoing queue.

``list [--json]``, ``show ID|NAME``, ``retry ID|all``, ``delete ID``, ``flush``. Retrying
only makes an entry due now; a running server picks it up at its next poll.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .common import CLIError, add_config_argument, open_database


def register(subparsers) -> None:
    """Add the ``queue`` command to the ``mailet-mta`` parser."""
    parser = subparsers.add_parser("queue", help="inspect and control the outgoing queue")
    sub = parser.add_subparsers(dest="queue_command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("list", help="list queued entries")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--queue", help="only this queue (RemoteDelivery's outgoing=)")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="show an entry with its recipients and errors, by row "
                                    "number or by the mail's name (as in the log's id= "
                                    "and the SMTP reply 'queued as NAME')")
    p.add_argument("id", metavar="ID|NAME")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("retry", help="make an entry (or all) due now")
    p.add_argument("id", help="entry id or 'all'")
    p.set_defaults(func=cmd_retry)
    p = sub.add_parser("delete", help="remove an entry without delivering or bouncing it")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_delete)
    p = sub.add_parser("flush", help="make every entry due now")
    p.set_defaults(func=cmd_flush)
    for p in sub.choices.values():
        add_config_argument(p)


def _run(args, fn, *fn_args):
    from ..delivery import queue_store

    _config, db = open_database(args)
    try:
        with db.transaction() as conn:
            return getattr(queue_store, fn)(conn, *fn_args)
    finally:
        db.engine.dispose()


def _when(ts: float) -> str:
    delta = ts - time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return f"{stamp} (now)" if delta <= 0 else f"{stamp} (in {int(delta)}s)"


def cmd_list(args) -> int:
    entries = _run(args, "list_entries", args.queue)
    if args.json:
        json.dump([e.to_json() for e in entries], sys.stdout, indent=2)
        print()
        return 0
    if not entries:
        print("the outgoing queue is empty")
        return 0
    print(f"{'ID':>6}  {'DOMAIN':<28} {'TRIES':>5}  {'PENDING':>7}  {'NEXT ATTEMPT':<32} SENDER")
    for e in entries:
        print(f"{e.id:>6}  {e.domain[:28]:<28} {e.attempts:>5}  {len(e.pending()):>7}  "
              f"{_when(e.next_attempt):<32} <{e.sender or ''}>")
    return 0


def _entries_of(conn, key: str) -> list:
    """The entries named by ``key``: a row number, or every entry of the mail so named
    (one per destination domain)."""
    from sqlalchemy import select

    from ..delivery import queue_store
    from ..storage import schema

    if key.isdigit():
        entry = queue_store.get_entry(conn, int(key))
        return [entry] if entry is not None else []
    table = schema.outgoing
    ids = conn.execute(select(table.c.id).where(table.c.mail_name == key)
                       .order_by(table.c.id)).scalars().all()
    return [queue_store.get_entry(conn, i) for i in ids]


def cmd_show(args) -> int:
    _config, db = open_database(args)
    try:
        with db.transaction() as conn:
            entries = _entries_of(conn, args.id.strip())
    finally:
        db.engine.dispose()
    if not entries:
        raise CLIError(f"no queue entry with id or mail name {args.id!r} "
                       f"(see: mailet-mta queue list)")
    for entry in entries:
        _print_entry(entry)
    return 0


def _print_entry(entry) -> None:
    data = entry.to_json()
    print(f"entry {entry.id}: mail {entry.mail_name}, queue {entry.queue}, "
          f"domain {entry.domain}")
    print(f"  sender: <{entry.sender or ''}>")
    print(f"  attempts: {entry.attempts} (DNS problems {entry.dns_failures}), "
          f"next: {_when(entry.next_attempt)}")
    if entry.owner:
        print(f"  being delivered by {entry.owner} (lease until {_when(entry.lease_until)})")
    if entry.last_error:
        print(f"  last error: {entry.last_error}")
    for r in entry.recipients:
        detail = f" — {r['error']}" if r.get("error") else ""
        print(f"  {r['status']:<8} {r['address']}{detail}")
    print("  options: " + json.dumps(data["options"], sort_keys=True))


def cmd_retry(args) -> int:
    if args.id == "all":
        count = _run(args, "retry_now", None)
    else:
        try:
            entry_id = int(args.id)
        except ValueError:
            raise CLIError(f"queue retry takes an entry id or 'all', not {args.id!r}") from None
        count = _run(args, "retry_now", entry_id)
        if count == 0:
            raise CLIError(f"no queue entry {entry_id} (see: mailet-mta queue list)")
    print(f"{count} entr{'y' if count == 1 else 'ies'} due now")
    return 0


def cmd_delete(args) -> int:
    if not _run(args, "remove", args.id):
        raise CLIError(f"no queue entry {args.id} (see: mailet-mta queue list)")
    print(f"deleted queue entry {args.id}")
    return 0


def cmd_flush(args) -> int:
    count = _run(args, "retry_now", None)
    print(f"{count} entr{'y' if count == 1 else 'ies'} due now")
    return 0


def main(argv=None) -> int:
    """Run ``queue`` on its own (tests, or before the main CLI wires it)."""
    parser = argparse.ArgumentParser(prog="mailet-mta")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"mailet-mta: {exc}", file=sys.stderr)
        return 1
