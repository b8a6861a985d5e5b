"""``mailet-mta db upgrade|current``: schema migrations."""

from __future__ import annotations

from .common import add_config_argument, open_database


def register(sub) -> None:
    p = sub.add_parser("db", help="database schema migrations")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dsub.required = True
    up = dsub.add_parser("upgrade", help="upgrade the schema to the newest version")
    add_config_argument(up)
    up.set_defaults(func=upgrade)
    cur = dsub.add_parser("current", help="print the schema version")
    add_config_argument(cur)
    cur.set_defaults(func=current)


def upgrade(args) -> int:
    from ..storage.migrate import current_revision

    _config, db = open_database(args, upgrade=True)
    print(f"database at revision {current_revision(db.engine)}")
    return 0


def current(args) -> int:
    from ..storage.migrate import current_revision

    _config, db = open_database(args, upgrade=False)
    print(current_revision(db.engine) or "empty")
    return 0
