"""``mailet-mta queue``: look at and steer the outgoing queue.

``list [--json]``, ``show ID|NAME``, ``retry ID|all``, ``delete ID``, ``flush``. Retrying
only makes an entry due now; a running server picks it up at its next poll.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .common import CLIError, add_config_argument, admin_call


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


def _when(ts: float) -> str:
    delta = ts - time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return f"{stamp} (now)" if delta <= 0 else f"{stamp} (in {int(delta)}s)"


def cmd_list(args) -> int:
    from ..admin import queue as admin

    entries = admin_call(args, admin.list_entries, args.queue)
    if args.json:
        json.dump(entries, sys.stdout, indent=2)
        print()
        return 0
    if not entries:
        print("the outgoing queue is empty")
        return 0
    print(f"{'ID':>6}  {'DOMAIN':<28} {'TRIES':>5}  {'PENDING':>7}  {'NEXT ATTEMPT':<32} SENDER")
    for e in entries:
        pending = sum(1 for r in e["recipients"] if r["status"] == "pending")
        print(f"{e['id']:>6}  {e['domain'][:28]:<28} {e['attempts']:>5}  {pending:>7}  "
              f"{_when(e['next_attempt']):<32} <{e['sender']}>")
    return 0


def cmd_show(args) -> int:
    from ..admin import queue as admin

    for entry in admin_call(args, admin.get_entries, args.id):
        _print_entry(entry)
    return 0


def _print_entry(entry: dict) -> None:
    print(f"entry {entry['id']}: mail {entry['mail']}, queue {entry['queue']}, "
          f"domain {entry['domain']}")
    print(f"  sender: <{entry['sender']}>")
    print(f"  attempts: {entry['attempts']} (DNS problems {entry['dns_failures']}), "
          f"next: {_when(entry['next_attempt'])}")
    if entry["owner"]:
        print(f"  being delivered by {entry['owner']} "
              f"(lease until {_when(entry['lease_until'])})")
    if entry["last_error"]:
        print(f"  last error: {entry['last_error']}")
    for r in entry["recipients"]:
        detail = f" — {r['error']}" if r.get("error") else ""
        print(f"  {r['status']:<8} {r['address']}{detail}")
    print("  options: " + json.dumps(entry["options"], sort_keys=True))


def cmd_retry(args) -> int:
    from ..admin import queue as admin

    if args.id == "all":
        count = admin_call(args, admin.flush)
    else:
        try:
            entry_id = int(args.id)
        except ValueError:
            raise CLIError(f"queue retry takes an entry id or 'all', not {args.id!r}") from None
        count = admin_call(args, admin.retry, entry_id)
    print(f"{count} entr{'y' if count == 1 else 'ies'} due now")
    return 0


def cmd_delete(args) -> int:
    from ..admin import queue as admin

    admin_call(args, admin.delete, args.id)
    print(f"deleted queue entry {args.id}")
    return 0


def cmd_flush(args) -> int:
    from ..admin import queue as admin

    count = admin_call(args, admin.flush)
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
