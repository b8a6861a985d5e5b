"""The users, domains, mailbox and repository subcommands, called through argparse."""

from __future__ import annotations

import argparse
import io

import pytest

from mailet_mta.cli import common
from mailet_mta.cli import domains as domains_cli
from mailet_mta.cli import mailbox as mailbox_cli
from mailet_mta.cli import repository as repository_cli
from mailet_mta.cli import users as users_cli
from mailet_mta.cli.common import CLIError
from mailet_mta.config.model import ServerConfig, StorageConfig
from mailet_mta.storage import mailboxes, passwords, repositories, users
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database


@pytest.fixture
def config(tmp_path, monkeypatch, migrated_db_url):
    cfg = ServerConfig(servernames=["localhost"],
                       storage=StorageConfig(url=migrated_db_url, data_dir=str(tmp_path / "var")))
    monkeypatch.setattr(common, "load_config", lambda args: cfg)
    return cfg


def run(argv, stdin: str | None = None, monkeypatch=None) -> int:
    parser = argparse.ArgumentParser(prog="mailet-mta")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (users_cli, domains_cli, mailbox_cli, repository_cli):
        module.register(sub)
    args = parser.parse_args(argv)
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return args.func(args)


def _db(config):
    db = Database(config.storage.url)
    return db


def test_domains_add_list_remove(config, capsys):
    assert run(["domains", "add", "Example.COM"]) == 0
    assert "domain example.com added" in capsys.readouterr().out
    assert run(["domains", "list"]) == 0
    out = capsys.readouterr().out
    assert "example.com" in out and "localhost" in out and "servernames" in out
    assert run(["domains", "remove", "example.com"]) == 0
    with pytest.raises(CLIError, match="does not exist"):
        run(["domains", "remove", "example.com"])


def test_users_add_reads_the_password_from_stdin(config, capsys, monkeypatch):
    assert run(["users", "add", "Bob@localhost", "--password-stdin", "--quota", "10m"],
               stdin="s3cret pass\n", monkeypatch=monkeypatch) == 0
    assert "user bob@localhost added" in capsys.readouterr().out
    db = _db(config)
    with db.transaction() as conn:
        stored = users.get_password_hash(conn, "bob@localhost")
        assert users.get_user(conn, "bob@localhost").quota == 10 * 1024 * 1024
    db.engine.dispose()
    assert passwords.verify_password(stored, "s3cret pass")


def test_users_add_has_no_password_argument():
    parser = argparse.ArgumentParser()
    users_cli.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["users", "add", "bob@localhost", "--password", "x"])


def test_users_add_refuses_an_empty_password(config, monkeypatch):
    with pytest.raises(CLIError, match="empty"):
        run(["users", "add", "bob@localhost", "--password-stdin"], stdin="\n",
            monkeypatch=monkeypatch)


def test_users_add_in_an_unknown_domain_names_the_fix(config, monkeypatch):
    with pytest.raises(CLIError, match="domains add elsewhere.org"):
        run(["users", "add", "bob@elsewhere.org", "--password-stdin"], stdin="pw\n",
            monkeypatch=monkeypatch)


def test_users_add_with_a_malformed_address_fails_before_the_prompt(config):
    with pytest.raises(CLIError, match="user@domain"):
        run(["users", "add", "not-an-address"])


def test_users_passwd_list_quota_remove(config, capsys, monkeypatch):
    run(["users", "add", "bob@localhost", "--password-stdin"], stdin="one\n",
        monkeypatch=monkeypatch)
    assert run(["users", "passwd", "bob@localhost", "--password-stdin"], stdin="two\n",
               monkeypatch=monkeypatch) == 0
    db = _db(config)
    with db.transaction() as conn:
        assert passwords.verify_password(users.get_password_hash(conn, "bob@localhost"),
                                         "two")
    db.engine.dispose()
    assert run(["users", "quota", "bob@localhost", "1k"]) == 0
    capsys.readouterr()
    assert run(["users", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["USER", "USED", "QUOTA", "CREATED"]
    assert out[2].split()[:3] == ["bob@localhost", "0", "1024"]
    assert run(["users", "remove", "bob@localhost"]) == 0
    with pytest.raises(CLIError, match="no such user"):
        run(["users", "remove", "bob@localhost"])


def test_mailbox_list_shows_messages(config, capsys, monkeypatch, tmp_path):
    run(["users", "add", "bob@localhost", "--password-stdin"], stdin="pw\n",
        monkeypatch=monkeypatch)
    db = _db(config)
    blobs = BlobStore(tmp_path / "var" / "blobs")
    ref = blobs.from_bytes(b"Subject: x\r\n\r\nhello\r\n")
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
        mailboxes.store_message(conn, "bob@localhost", "INBOX", ref.id, b"", ref.size)
    db.engine.dispose()
    capsys.readouterr()
    assert run(["mailbox", "list", "BOB@localhost"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "bob@localhost INBOX: 1 messages, %d octets" % ref.size
    assert out[3].split()[:3] == ["1", "1", str(ref.size)]
    with pytest.raises(CLIError, match="no such user"):
        run(["mailbox", "list", "nobody@localhost"])


def test_repository_list_show_remove_reprocess(config, capsys, tmp_path):
    from mailet_mta.address import MailAddress
    from mailet_mta.mail import Mail

    db = _db(config)
    db.upgrade()
    blobs = BlobStore(tmp_path / "var" / "blobs")
    ref = blobs.from_bytes(b"Subject: failed\r\nX-Test: 1\r\n\r\nbody text\r\n")
    mail = Mail("mail-1", sender=MailAddress.parse("a@remote.example"),
                recipients=[MailAddress.parse("b@localhost")], state="error",
                error_message="550 5.1.1 unknown")
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
        first = repositories.store(conn, "error", mail, ref.id)
        second = repositories.store(conn, "error", mail, ref.id)
    db.engine.dispose()
    assert run(["repository", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == ["error", "2"]
    assert run(["repository", "list", "error"]) == 0
    assert "550 5.1.1 unknown" in capsys.readouterr().out
    assert run(["repository", "show", str(first)]) == 0
    out = capsys.readouterr().out
    assert "Subject: failed" in out and "body text" not in out and "<a@remote.example>" in out
    assert run(["repository", "show", str(first), "--body"]) == 0
    assert "body text" in capsys.readouterr().out
    assert run(["repository", "remove", str(first)]) == 0
    with pytest.raises(CLIError, match="no stored mail"):
        run(["repository", "show", str(first)])
    assert run(["repository", "reprocess", "error", "--state", "transport"]) == 0
    assert "1 mail(s) moved" in capsys.readouterr().out
    with pytest.raises(CLIError, match="nothing to reprocess"):
        run(["repository", "reprocess", "error"])
    assert second
