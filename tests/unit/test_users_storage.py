"""Domains, users, mappings and the directory snapshot on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mailet_mta.storage import domains, mappings, users
from mailet_mta.storage.db import Database


@pytest.fixture
def db(migrated_db_url):
    database = Database(migrated_db_url)
    yield database
    database.engine.dispose()


def _generation(db):
    with db.transaction() as conn:
        return Database.generation(conn)


def test_domain_is_stored_lower_case_idna(db):
    with db.transaction() as conn:
        assert domains.add_domain(conn, "Bücher.Example") == "xn--bcher-kva.example"
        assert domains.list_domains(conn) == ["xn--bcher-kva.example"]
        assert domains.domain_exists(conn, "BÜCHER.example")


def test_adding_an_existing_domain_is_refused(db):
    with db.transaction() as conn:
        domains.add_domain(conn, "example.com")
    with pytest.raises(domains.DomainError, match="already exists"):
        with db.transaction() as conn:
            domains.add_domain(conn, "EXAMPLE.com")


def test_invalid_domain_is_refused(db):
    with pytest.raises(domains.DomainError):
        with db.transaction() as conn:
            domains.add_domain(conn, "bad_domain..com")


def test_every_directory_change_bumps_the_generation(db):
    seen = [_generation(db)]
    steps = [
        lambda c: domains.add_domain(c, "example.com"),
        lambda c: users.add_user(c, "bob@example.com", "h"),
        lambda c: users.set_password(c, "bob@example.com", "h2"),
        lambda c: users.set_quota(c, "bob@example.com", 1000),
        lambda c: mappings.add_mapping(c, "alias@example.com", "bob@example.com"),
        lambda c: mappings.remove_mapping(c, "alias@example.com", "bob@example.com"),
        lambda c: users.remove_user(c, "bob@example.com"),
        lambda c: domains.remove_domain(c, "example.com"),
    ]
    for step in steps:
        with db.transaction() as conn:
            step(conn)
        seen.append(_generation(db))
    assert len(set(seen)) == len(seen)


def test_user_of_a_non_local_domain_is_refused(db):
    with pytest.raises(users.UserError, match="not a local domain"):
        with db.transaction() as conn:
            users.add_user(conn, "bob@elsewhere.org", "h")


def test_user_of_a_configured_servername_is_accepted(db):
    with db.transaction() as conn:
        assert users.add_user(conn, "Bob@LocalHost", "h", local_domains={"localhost"}) \
            == "bob@localhost"
        assert [u.name for u in users.list_users(conn)] == ["bob@localhost"]


def test_duplicate_user_is_refused_case_insensitively(db):
    with db.transaction() as conn:
        users.add_user(conn, "bob@localhost", "h", local_domains={"localhost"})
    with pytest.raises(users.UserError, match="already exists"):
        with db.transaction() as conn:
            users.add_user(conn, "BOB@localhost", "h", local_domains={"localhost"})


def test_password_change_of_unknown_user_is_refused(db):
    with pytest.raises(users.UserError, match="no such user"):
        with db.transaction() as conn:
            users.set_password(conn, "nobody@localhost", "h")


def test_domain_with_users_cannot_be_removed(db):
    with db.transaction() as conn:
        domains.add_domain(conn, "example.com")
        users.add_user(conn, "bob@example.com", "h")
    with pytest.raises(domains.DomainError, match="1 user"):
        with db.transaction() as conn:
            domains.remove_domain(conn, "example.com")


def test_list_users_by_domain(db):
    with db.transaction() as conn:
        for d in ("a.example", "b.example"):
            domains.add_domain(conn, d)
        users.add_user(conn, "x@a.example", "h")
        users.add_user(conn, "y@b.example", "h", quota=10)
        assert [u.name for u in users.list_users(conn, "B.example")] == ["y@b.example"]
        assert users.get_user(conn, "y@b.example").quota == 10


def test_load_directory_returns_domains_users_and_mappings(db):
    with db.transaction() as conn:
        domains.add_domain(conn, "example.com")
        users.add_user(conn, "bob@example.com", "h")
        mappings.add_mapping(conn, "Postmaster@Example.com", "bob@example.com")
        mappings.add_mapping(conn, "postmaster@example.com", "error:550 no")
        mappings.add_mapping(conn, "alias.example", "domain:example.com")
        mappings.add_mapping(conn, "*@example.com", "bob@example.com")
    with db.transaction() as conn:
        assert users.load_directory(conn) == {
            "domains": {"example.com"},
            "users": {"bob@example.com"},
            "mappings": {"postmaster@example.com": ["bob@example.com", "error:550 no"],
                         "alias.example": ["domain:example.com"],
                         "*@example.com": ["bob@example.com"]},
        }


def test_duplicate_mapping_is_refused(db):
    with db.transaction() as conn:
        mappings.add_mapping(conn, "a@example.com", "b@example.com")
    with pytest.raises(mappings.MappingError, match="already exists"):
        with db.transaction() as conn:
            mappings.add_mapping(conn, "A@example.com", "b@example.com")
