"""Health checks (James's ``/healthcheck``): the database, the blob store, the listeners.

Each check gives ``{"componentName", "status", "cause"}`` with status ``healthy`` or
``unhealthy``; the whole report is ``healthy`` when every check is, else ``unhealthy``.
The checks block (SQL, a file probe): run them off the reactor.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import select


def check(name: str, cause: str | None) -> dict:
    return {"componentName": name, "status": "healthy" if cause is None else "unhealthy",
            "cause": cause}


def check_database(conn, _config=None) -> dict:
    """One round trip to the database."""
    conn.execute(select(1)).scalar()
    return check("database", None)


def check_blob_store(root: str | os.PathLike) -> dict:
    """The blob directory exists and takes a new file (created and removed at once)."""
    try:
        path = Path(root)
        tmp = path / "tmp" if (path / "tmp").is_dir() else path
        with tempfile.NamedTemporaryFile(dir=tmp, prefix=".health-"):
            pass
    except OSError as exc:
        return check("blob store", f"cannot write in {root}: {exc.strerror or exc}")
    return check("blob store", None)


def check_listeners(listeners) -> list[dict]:
    """One check per listener ``(name, kind, service)``: running and bound."""
    out = []
    for name, kind, svc in listeners:
        bound = getattr(svc, "listening_port", None) or getattr(svc, "port", None)
        cause = None if svc.running and bound is not None else "not listening"
        out.append(check(f"listener {name} ({kind})", cause))
    return out


def report(checks: list[dict]) -> dict:
    healthy = all(c["status"] == "healthy" for c in checks)
    return {"status": "healthy" if healthy else "unhealthy", "checks": checks}
