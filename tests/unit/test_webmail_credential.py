"""The web mail's internal credential: the secret file, the check, the session's fields."""

from __future__ import annotations

import dataclasses
import inspect
import os
import threading

import pytest_twisted

from mailet_mta.acceptance import SpoolBackend
from mailet_mta.config import load_config_text
from mailet_mta.web.webmail_sessions import Session, SessionStore
from mailet_mta.webmail_credential import (
    AUTHCID,
    SECRET_FILE,
    WebmailCredential,
    is_loopback,
    load_or_create_secret,
)

CONFIG = """
servernames: [example.com]
smtpservers: [{name: submission, listen: "tcp:0:interface=127.0.0.1", authRequired: true}]
"""


def test_the_secret_file_is_made_private_whatever_the_umask_and_kept(tmp_path):
    old = os.umask(0)
    try:
        secret = load_or_create_secret(tmp_path)
    finally:
        os.umask(old)
    path = tmp_path / SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600 and len(secret) >= 43
    assert load_or_create_secret(tmp_path) == secret
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]    # no temporary left
    os.chmod(path, 0o644)
    assert load_or_create_secret(tmp_path) == secret
    assert path.stat().st_mode & 0o777 == 0o600


def test_processes_starting_at_once_agree_on_one_secret(tmp_path):
    found: list[str] = []
    threads = [threading.Thread(target=lambda: found.append(load_or_create_secret(tmp_path)))
               for _n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and len(set(found)) == 1


def test_only_loopback_addresses_count_as_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.1") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    for ip in ("192.0.2.1", "10.0.0.1", "::", "0.0.0.0", "::ffff:192.0.2.1", "", "x"):
        assert not is_loopback(ip), ip


def test_the_credential_needs_loopback_its_identity_and_the_exact_secret():
    cred = WebmailCredential("s" * 43)
    assert cred.allows(AUTHCID, "s" * 43, "127.0.0.1") and cred.allows(AUTHCID, "s" * 43,
                                                                        "::1")
    assert not cred.allows(AUTHCID, "s" * 43, "192.0.2.1")     # the right secret, remote
    assert not cred.allows(AUTHCID, "s" * 42, "127.0.0.1")
    assert not cred.allows(AUTHCID, "", "127.0.0.1")
    assert not cred.allows("alice@example.com", "s" * 43, "127.0.0.1")
    assert "s" * 43 not in repr(cred)


def _backend(credential):
    from mailet_mta.directory import Directory

    config = load_config_text(CONFIG, "yaml")
    directory = Directory(None, config.servernames, config.postmaster_address)
    directory.apply({"domains": set(), "users": {"alice@example.com"}, "quotas": {},
                     "mappings": {}, "generation": 1})
    return SpoolBackend(config, config.smtpservers[0], directory, None, None, None,
                        webmail_credential=credential)


@pytest_twisted.ensureDeferred
async def test_the_backend_acts_for_existing_users_only_with_the_credential():
    cred = WebmailCredential("s" * 43)
    backend = _backend(cred)
    assert await backend.authenticate_for("Alice@example.com", AUTHCID, "s" * 43,
                                          "127.0.0.1") == "alice@example.com"
    assert await backend.authenticate_for("bob@example.com", AUTHCID, "s" * 43,
                                          "127.0.0.1") is None
    assert await backend.authenticate_for("not an address", AUTHCID, "s" * 43,
                                          "127.0.0.1") is None
    assert await backend.authenticate_for("alice@example.com", AUTHCID, "s" * 43,
                                          "192.0.2.7") is None
    # without the web mail there is no credential: nobody may act for anyone
    assert await _backend(None).authenticate_for("alice@example.com", AUTHCID, "s" * 43,
                                                 "127.0.0.1") is None


def test_a_session_holds_no_password():
    assert [f.name for f in dataclasses.fields(Session)] == ["id", "user", "last_seen"]
    assert list(inspect.signature(SessionStore.create).parameters) == ["self", "user"]
    session = Session("an-id", "alice@example.com", 1.0)
    assert set(vars(session)) == {"id", "user", "last_seen"}
    assert not any("pass" in name or "secret" in name for name in vars(session))
