"""``mailet-mta nodes``: the processes sharing this database and what each holds."""

from __future__ import annotations

import json
import time

from .common import add_config_argument, admin_call


def register(sub) -> None:
    p = sub.add_parser("nodes", help="list the mailet-mta processes sharing the database")
    add_config_argument(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..admin.nodes import list_nodes

    nodes = admin_call(args, list_nodes)
    if args.json:
        print(json.dumps([{k: v for k, v in n.items() if k != "alive"} for n in nodes],
                         indent=2))
        return 0
    if not nodes:
        print("no running nodes")
        return 0
    now = time.time()
    print(f"{'NODE':32} {'HOST':16} {'PID':>7} {'UP':>8} {'SEEN':>8} {'SPOOL':>6} "
          f"{'QUEUE':>6} {'POP3':>5}  STATE")
    for n in nodes:
        age = now - n["heartbeat"]
        state = "alive" if n["alive"] else "STALE (dead?)"
        print(f"{n['name'][:32]:32} {str(n['info'].get('host', ''))[:16]:16} "
              f"{n['info'].get('pid', ''):>7} {_span(now - n['started']):>8} "
              f"{_span(age) + ' ago':>8} {n.get('spool', 0):>6} {n.get('outgoing', 0):>6} "
              f"{n.get('pop3_locks', 0):>5}  {state}")
    return 0


def _span(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
