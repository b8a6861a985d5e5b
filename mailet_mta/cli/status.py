"""``mailet-mta status``: what the server is doing, as tables or ``--json``.

- the running process and its listeners (from ``<data_dir>/listeners.json``, written by
  ``serve`` once every listener is bound, and a check that its pid is alive); with
  worker processes, each worker — its pid, node, last heartbeat, what it has done
  (connections, mails accepted, recipients delivered) and holds — and the totals;
- the spool: mails per processor state, the oldest, how many wait for a retry;
- the outgoing queue per destination: mails, recipients still pending, attempts, the
  next attempt and the last error;
- the repositories (``error`` first, always shown), with their sizes.

Everything is read from the database and the data directory, so it works whether the
server runs or not, and against a PostgreSQL database several servers share. The exit
status says whether the server runs: 0 if it does, 3 if not (as ``systemctl status``
and LSB init scripts answer "program is not running").
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .common import add_config_argument, open_database
from .tables import format_table, format_time

NOT_RUNNING = 3


def register(sub) -> None:
    p = sub.add_parser("status", help="listeners, spool, outgoing queue and repositories "
                                      "at a glance; exit status 3 when the server is "
                                      "not running")
    add_config_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(func=run)


def run(args) -> int:
    config, db = open_database(args)
    try:
        with db.engine.connect() as conn:
            report = collect(conn, config)
    finally:
        db.engine.dispose()
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(render(report))
    return 0 if report["server"]["running"] else NOT_RUNNING


# -- gathering ------------------------------------------------------------------------
def collect(conn, config) -> dict:
    """Everything ``status`` shows, as plain data (the ``--json`` form)."""
    server = server_info(Path(config.storage.data_dir))
    return {"server": server,
            "workers": worker_states(conn, server.pop("workers")),
            "spool": spool_states(conn),
            "outgoing": outgoing_destinations(conn),
            "repositories": repository_sizes(conn, config.spoolmanager.error_repository),
            "generated": time.time()}


def server_info(data_dir: Path) -> dict:
    """The process recorded in listeners.json and whether it still runs."""
    try:
        info = json.loads((data_dir / "listeners.json").read_text())
    except (OSError, ValueError):
        return {"running": False, "pid": None, "node": None, "listeners": [], "workers": []}
    pid = info.get("pid")
    listeners = [{"name": name, "protocol": item.get("protocol"), "host": item.get("host"),
                  "port": item.get("port")} for name, item in info.get("listeners", {}).items()]
    return {"running": _alive(pid), "pid": pid, "node": info.get("node"),
            "listeners": listeners, "workers": list(info.get("workers", []))}


def worker_states(conn, workers: list[dict]) -> dict:
    """The worker processes of a supervisor (from listeners.json) with what each has
    done (the counters of its last heartbeat) and holds (from ``nodes``), and the
    totals; empty without workers."""
    from ..nodes import list_nodes

    if not workers:
        return {"workers": [], "total": {}}
    nodes = {n["name"]: n for n in list_nodes(conn)}
    rows = []
    for worker in workers:
        node = nodes.get(worker.get("node"), {})
        info = node.get("info", {})
        rows.append({"index": worker.get("index"), "pid": worker.get("pid"),
                     "node": worker.get("node"), "running": _alive(worker.get("pid")),
                     "heartbeat": node.get("heartbeat"),
                     **{key: int(info.get(key, 0)) for key in WORKER_COUNTERS},
                     **{key: int(node.get(key, 0)) for key in WORKER_HOLDINGS}})
    total = {"running": sum(1 for r in rows if r["running"]),
             **{key: sum(r[key] for r in rows) for key in WORKER_COUNTERS + WORKER_HOLDINGS}}
    return {"workers": rows, "total": total}


WORKER_COUNTERS = ("connections", "accepted", "delivered")   # since the worker started
WORKER_HOLDINGS = ("spool", "outgoing", "pop3_locks")      # leased by it now


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True       # it exists, under another user
    return True


def spool_states(conn) -> list[dict]:
    from ..admin.spool import states

    return states(conn)


def outgoing_destinations(conn) -> list[dict]:
    """One entry per (queue, destination domain), soonest next attempt first."""
    from ..admin.queue import destinations

    return destinations(conn)


def repository_sizes(conn, error_repository: str) -> list[dict]:
    from sqlalchemy import func, select

    from ..storage import schema

    r = schema.repository_mails
    sizes = dict(conn.execute(select(r.c.repository, func.count())
                              .group_by(r.c.repository)).all())
    sizes.setdefault(error_repository, 0)
    names = [error_repository] + sorted(n for n in sizes if n != error_repository)
    return [{"repository": n, "mails": sizes[n], "error_repository": n == error_repository}
            for n in names]


# -- the tables -----------------------------------------------------------------------
def render(report: dict) -> str:
    server = report["server"]
    if server["running"]:
        head = f"server: running (pid {server['pid']}, node {server['node']})"
    elif server["pid"]:
        head = f"server: not running (pid {server['pid']} in listeners.json has exited)"
    else:
        head = "server: not running (no listeners.json in the data directory)"
    parts = [head]
    workers = report.get("workers", {})
    if workers.get("workers"):
        parts.append(_workers_table(workers))
    if server["listeners"]:
        parts.append(format_table(
            ["LISTENER", "PROTOCOL", "ADDRESS"],
            [(item["name"], item["protocol"], f"{item['host']}:{item['port']}")
             for item in server["listeners"]]))
    parts.append("spool (mails being processed):")
    spool = report["spool"]
    parts.append(format_table(
        ["STATE", "MAILS", "RETRYING", "OLDEST", "NEXT RETRY"],
        [(s["state"], s["mails"], s["retrying"], format_time(s["oldest"]),
          format_time(s["next_retry"])) for s in spool]) if spool else "  empty")
    parts.append("outgoing queue:")
    outgoing = report["outgoing"]
    parts.append(format_table(
        ["DESTINATION", "QUEUE", "MAILS", "RCPTS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"],
        [(o["destination"], o["queue"], o["mails"], o["pending_recipients"], o["attempts"],
          _when(o["next_attempt"]), _short(o["last_error"])) for o in outgoing])
        if outgoing else "  empty")
    parts.append("repositories:")
    parts.append(format_table(
        ["REPOSITORY", "MAILS"],
        [(r["repository"] + (" (error repository)" if r["error_repository"] else ""),
          r["mails"]) for r in report["repositories"]]))
    return "\n".join(parts)


def _workers_table(workers: dict) -> str:
    total = workers["total"]
    rows = [(w["index"], w["pid"], w["node"], "yes" if w["running"] else "NO",
             format_time(w["heartbeat"]), w["connections"], w["accepted"], w["delivered"],
             w["spool"], w["outgoing"]) for w in workers["workers"]]
    rows.append(("total", "", "", total["running"], "", total["connections"],
                 total["accepted"], total["delivered"], total["spool"], total["outgoing"]))
    return (f"workers: {total['running']} running of {len(workers['workers'])} "
            f"(counts as of each worker's last heartbeat)\n" + format_table(
                ["WORKER", "PID", "NODE", "RUNNING", "HEARTBEAT", "CONNECTIONS",
                 "ACCEPTED", "DELIVERED", "SPOOL", "OUTGOING"], rows))


def _when(ts) -> str:
    if ts is None:
        return ""
    if ts <= time.time():
        return "now"
    return format_time(ts)


def _short(text, width: int = 70) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"
