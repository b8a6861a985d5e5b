"""Schema migrations with Alembic, run at start-up or by ``mailet-mta db upgrade``."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

if TYPE_CHECKING:   # alembic loads when a migration runs, not for reading the version
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"   # Alembic's default name, which env.py keeps


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision`` (blocking).

    A database already at the newest revision (every start but the first after an
    update) is left as it is without loading Alembic: its import is most of what a
    start costs in time and memory."""
    if revision == "head" and current_revision(engine) in head_revisions():
        return
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def head_revisions() -> set[str]:
    """The revisions no migration builds on (one: the migrations form a line), read
    from the migration scripts' ``revision`` and ``down_revision`` assignments as
    Alembic reads them, without importing them or Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(script.read_text()).body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id in ("revision", "down_revision")):
                continue        # only these two are literals; other assignments may not be
            value = ast.literal_eval(node.value)
            if node.targets[0].id == "revision":
                revisions.add(value)
            elif value is not None:
                parents.update([value] if isinstance(value, str) else value)
    return revisions - parents


def current_revision(engine: Engine) -> str | None:
    """The schema's revision, None for a database without mailet-mta's tables.

    Read from Alembic's version table without loading Alembic (the read-only commands
    need only this); more than one row (branches, never made here) is left to Alembic,
    which refuses it."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        if len(rows) <= 1:
            return rows[0][0] if rows else None
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()
