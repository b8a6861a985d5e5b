"""Node identity: every process sharing a database registers itself and beats a heart.

Operators (``mailet-mta nodes``) see which processes share the database, since when,
when each was last alive, and what each holds (spooled mails, outgoing entries,
POP3 mailbox locks). A node that stops cleanly removes its row; one that died stays
listed with a stale heartbeat until its leases expire and others take its work.
"""

from __future__ import annotations

import json
import os
import socket
import time

from sqlalchemy import delete, func, select, update
from twisted.application.internet import TimerService
from twisted.logger import Logger

from .storage import schema

log = Logger(namespace="mailet_mta.nodes")

HEARTBEAT = 10.0


def register(conn, name: str, info: dict) -> None:
    now = time.time()
    conn.execute(delete(schema.nodes).where(schema.nodes.c.name == name))
    conn.execute(schema.nodes.insert().values(name=name, started=now, heartbeat=now,
                                              info=json.dumps(info)))


def beat(conn, name: str, info: dict | None = None) -> None:
    values: dict = {"heartbeat": time.time()}
    if info is not None:
        values["info"] = json.dumps(info)
    conn.execute(update(schema.nodes).where(schema.nodes.c.name == name).values(**values))


def unregister(conn, name: str) -> None:
    conn.execute(delete(schema.nodes).where(schema.nodes.c.name == name))


def list_nodes(conn) -> list[dict]:
    """Every registered node with what it holds right now."""
    held = {}
    for table, key in ((schema.spool, "spool"), (schema.outgoing, "outgoing")):
        for owner, count in conn.execute(select(table.c.owner, func.count())
                                         .where(table.c.owner.is_not(None))
                                         .group_by(table.c.owner)):
            held.setdefault(owner, {})[key] = count
    for owner, count in conn.execute(select(schema.mailbox_locks.c.owner, func.count())
                                     .group_by(schema.mailbox_locks.c.owner)):
        node = owner.split("/")[0]
        held.setdefault(node, {})["pop3_locks"] = held.get(node, {}).get("pop3_locks", 0) + count
    out = []
    for row in conn.execute(select(schema.nodes).order_by(schema.nodes.c.name)):
        out.append({"name": row.name, "started": row.started, "heartbeat": row.heartbeat,
                    "info": json.loads(row.info or "{}"), **held.get(row.name, {})})
    return out


class NodeRegistry(TimerService):
    """Registers this process in ``nodes`` and refreshes its heartbeat; with
    ``figures`` (a callable returning a small dict of counters, e.g. mails accepted)
    each heartbeat also records them in the node's ``info``."""

    def __init__(self, db, name: str, info: dict | None = None, interval: float = HEARTBEAT,
                 figures=None):
        super().__init__(interval, self._beat)
        self.db = db
        self.node_name = name
        self.figures = figures
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), **(info or {})}

    def startService(self):
        with self.db.transaction() as conn:
            register(conn, self.node_name, self.info)
        super().startService()

    def _beat(self):
        info = {**self.info, **self.figures()} if self.figures is not None else None
        d = self.db.write(beat, self.node_name, info)
        d.addErrback(lambda f: log.failure("heartbeat failed", f))
        return d

    def stopService(self):
        d = super().stopService()

        def gone(_):
            return self.db.write(unregister, self.node_name)

        if d is None:
            return gone(None)
        return d.addCallback(gone)
