"""Migration 0003_imap: existing mailboxes get their counts and modseq 1, and the
migrated schema is the one schema.py describes (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailet_mta.storage import schema
from mailet_mta.storage.db import make_engine
from mailet_mta.storage.migrate import upgrade


def test_existing_mail_is_counted_and_gets_a_modseq(db_url):
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0002_auth_failures")
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO mailboxes (id, \"user\", name, uid_validity, uid_next) "
                "VALUES (1, 'bob@example.com', 'INBOX', 5, 4)"))
            for uid in (1, 2, 3):
                conn.execute(sa.text(
                    "INSERT INTO messages (mailbox_id, uid, uidl, blob_id, prefix, size, "
                    "internal_date, flags, deleted) VALUES "
                    "(1, :uid, :uidl, 'b', :prefix, 10, 0, '', :deleted)"),
                    {"uid": uid, "uidl": f"u{uid}", "prefix": b"", "deleted": uid == 3})
        upgrade(engine)
        with engine.connect() as conn:
            box = conn.execute(sa.select(schema.mailboxes)).one()._mapping
            modseqs = conn.execute(sa.select(schema.messages.c.modseq)).scalars().all()
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
        assert (box["message_count"], box["highest_modseq"], box["vanished_horizon"]) == (
            2, 1, 0)
        assert modseqs == [1, 1, 1]
        assert [d for d in diff if d[0] != "remove_table" or d[1].name != "alembic_version"] == []
    finally:
        engine.dispose()
