"""Shared fixtures: database URLs (SQLite always, PostgreSQL when reachable or required)."""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import settings

# No test writes into the checkout: Hypothesis keeps no example database in
# .hypothesis/ (a failing example is printed with the failure instead).
settings.register_profile("mailet-mta", database=None)
settings.load_profile("mailet-mta")

PG_URL = os.environ.get("MAILET_MTA_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("MAILET_MTA_REQUIRE_PG") == "1"


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"),
                             connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return str(exc)


@pytest.fixture(scope="session")
def pg_base_url():
    """The PostgreSQL URL; skips without a server unless MAILET_MTA_REQUIRE_PG=1."""
    problem = _pg_available()
    if problem:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (MAILET_MTA_REQUIRE_PG=1) but unreachable "
                        f"at {PG_URL}: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


@pytest.fixture
def pg_url(pg_base_url):
    """A fresh, empty PostgreSQL schema for one test (dropped afterwards)."""
    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(pg_base_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{pg_base_url}?options=-csearch_path%3D{schema}"
    yield url
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Run a test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "test.sqlite3")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def two_processes_db(db_url):
    """One database (schema up to date) as two processes see it: two started
    Database objects on ``db_url``, stopped afterwards."""
    import pytest_twisted
    from twisted.internet import defer

    from mailet_mta.storage.db import Database

    first = Database(db_url)
    first.upgrade()
    second = Database(db_url)
    first.start()
    second.start()
    yield first, second
    pytest_twisted.blockon(defer.gatherResults([first.stop(), second.stop()]))


# Whole folders that start real server processes, kill them or load them for seconds are
# "slow"; `pytest -m "not slow"` runs the fast set (unit, fuzz, in-process integration)
# in about a minute. A single slow test elsewhere carries @pytest.mark.slow itself.
# tests/soak is also "soak" (`pytest -m soak` runs the crash-and-load runs alone).
_SLOW_FOLDERS = {"soak", "e2e", "abuse"}
_SOAK_FOLDERS = {"soak"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.nodeid.split("/")
        if len(parts) > 2 and parts[1] in _SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
        if len(parts) > 2 and parts[1] in _SOAK_FOLDERS:
            item.add_marker(pytest.mark.soak)
