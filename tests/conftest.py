"""Shared fixtures: database URLs (SQLite always, PostgreSQL when reachable or required)."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager

import pytest
from hypothesis import settings

# No test writes into the checkout: Hypothesis keeps no example database in
# .hypothesis/ (a failing example is printed with the failure instead). The fast set
# (-m "not slow") runs a fifth of every property's examples (mailet-mta-fast; counts
# given in a test go through tests.support.examples.examples); the whole suite runs all.
settings.register_profile("mailet-mta", database=None)
settings.register_profile("mailet-mta-fast", settings.get_profile("mailet-mta"),
                          max_examples=20)
settings.load_profile("mailet-mta")


def pytest_configure(config):
    markexpr = config.getoption("markexpr", "") or ""
    if "not slow" in markexpr and not config.getoption("hypothesis_profile", None):
        settings.load_profile("mailet-mta-fast")

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


@contextmanager
def _fresh_schema(base_url):
    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{base_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def pg_url(pg_base_url):
    """A fresh, empty PostgreSQL schema for one test (dropped afterwards)."""
    with _fresh_schema(pg_base_url) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Run a test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "test.sqlite3")
    return request.getfixturevalue("pg_url")


# A migrated database for tests that need the newest schema, not the migrations: the
# migrations run once per test run (SQLite: a file each test copies; PostgreSQL: the
# statements they sent, recorded and replayed into each test's fresh schema). The
# migrations themselves are tested on empty databases (db_url, pg_url).
@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory):
    """A SQLite file at the newest migration (copy it; never open it)."""
    from mailet_mta.storage.db import Database

    path = tmp_path_factory.mktemp("migrated") / "migrated.sqlite3"
    database = Database("sqlite:///" + str(path))
    database.upgrade()
    database.engine.dispose()
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(scope="session")
def _migration_statements(pg_base_url):
    """Every statement but queries that the migrations send to PostgreSQL."""
    import sqlalchemy as sa

    from mailet_mta.storage.migrate import upgrade

    statements = []
    with _fresh_schema(pg_base_url) as url:
        engine = sa.create_engine(url)

        @sa.event.listens_for(engine, "before_cursor_execute")
        def record(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().split(None, 1)[0].upper() not in ("SELECT", "SHOW"):
                statements.append((statement, parameters, executemany))

        upgrade(engine)
        engine.dispose()
    return statements


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_db_url(request, tmp_path):
    """Run a test on SQLite and on PostgreSQL, each at the newest migration."""
    if request.param == "sqlite":
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), path)
        return "sqlite:///" + str(path)
    import sqlalchemy as sa

    url = request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        for statement, parameters, executemany in request.getfixturevalue(
                "_migration_statements"):
            if executemany:
                cursor.executemany(statement, parameters)
            else:
                cursor.execute(statement, parameters or None)
    engine.dispose()
    return url
@pytest.fixture
def two_processes_db(migrated_db_url):
    """One database (schema up to date) as two processes see it: two started
    Database objects on ``migrated_db_url``, stopped afterwards."""
    import pytest_twisted
    from twisted.internet import defer

    from mailet_mta.storage.db import Database

    first = Database(migrated_db_url)
    second = Database(migrated_db_url)
    first.start()
    second.start()
    yield first, second
    pytest_twisted.blockon(defer.gatherResults([first.stop(), second.stop()]))


# Whole folders that start real server processes, kill them or load them for seconds are
# "slow"; `pytest -m "not slow"` runs the fast set (unit, fuzz, in-process integration)
# in 2–3 minutes on 2 cores. A single slow test elsewhere carries @pytest.mark.slow itself.
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
