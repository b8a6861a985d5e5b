"""The mailet-mta processes sharing this database, with what each holds."""

from __future__ import annotations

import time

from ..nodes import HEARTBEAT
from ..nodes import list_nodes as _registered


def list_nodes(conn, _config=None) -> list[dict]:
    """Every registered node: name, started, heartbeat, info (host, pid), the spool
    mails, outgoing entries and POP3 locks it holds, and whether it looks alive."""
    now = time.time()
    return [{**node, "spool": node.get("spool", 0), "outgoing": node.get("outgoing", 0),
             "pop3_locks": node.get("pop3_locks", 0),
             "alive": now - node["heartbeat"] < 3 * HEARTBEAT}
            for node in _registered(conn)]
