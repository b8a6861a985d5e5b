"""Who is local, aliases and no backscatter, against real ``mailet-mta`` processes.

The client is ``smtplib`` from 127.0.0.2 — outside ``authorizedAddresses``
(127.0.0.1/32), not logged in — with a forged ``MAIL FROM`` in a domain whose MX
(static table) is a closed port on loopback: a bounce to it would sit in the outgoing
queue, where the tests look for it.
"""

from __future__ import annotations

import email
import smtplib
import sqlite3
import time

import pytest

from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

PASSWORD = "recipients-pw-123"
OUTSIDE = ("127.0.0.2", 0)
FORGED = "victim@forged.example"


def config_for(root, servernames=("example.com",), **extra):
    config = base_config(root / "var", servernames=list(servernames), **extra)
    smtp = config["smtpservers"][0]
    smtp.update({"helloName": "mail.example.com", "authFailureDelay": 0})
    config["dns"] = {"servers": ["127.0.0.1:9"], "timeout": 1,
                     "hosts": {"forged.example": ["127.0.0.1:9"]}}
    return config


def start(root, config, users=("postmaster@example.com", "alice@example.com"), name="a"):
    srv = ServerProcess(root, config, name=name)
    for user in users:
        srv.add_user(user, PASSWORD)
    return srv.start()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Server B (example.net, user bob) and server A (example.com), whose
    RecipientRewriteTable maps configured@example.com to alice, and which finds
    example.net at B through its static MX table."""
    root = tmp_path_factory.mktemp("recipients")
    b = start(root / "b", config_for(root / "b", servernames=["example.net"]),
              users=("bob@example.net",), name="b")
    config = config_for(root / "a")
    config["dns"]["hosts"]["example.net"] = [f"127.0.0.1:{b.port('smtp')}"]
    transport = config["spoolmanager"]["processors"]["transport"]["mailets"]
    rrt = next(m for m in transport if m["class"] == "RecipientRewriteTable")
    rrt["parameters"]["mapping"] = "configured@example.com=alice@example.com"
    try:
        a = start(root / "a", config, users=("postmaster@example.com", "alice@example.com",
                                              "carol@example.com"))
    except Exception:
        b.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def server(servers):
    return servers[0]


def outsider(srv) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10, source_address=OUTSIDE)
    s.ehlo("outsider.example")
    return s


def send(srv, rcpt: str, subject: str, sender: str = FORGED):
    """MAIL FROM ``sender``, RCPT ``rcpt`` (raw), DATA; returns the RCPT reply."""
    with outsider(srv) as s:
        assert s.mail(sender)[0] == 250
        code, text = s.rcpt(rcpt)
        if code == 250:
            assert s.data(f"From: {sender}\r\nSubject: {subject}\r\n\r\nhello\r\n"
                          .encode())[0] == 250
        return code, text.decode()


def pop3(srv, user: str) -> list[bytes]:
    return pop3_messages(srv, user, PASSWORD)


def subjects(srv, user: str) -> list[str]:
    return sorted(email.message_from_bytes(m)["Subject"] for m in pop3(srv, user))


def rows(srv, sql: str) -> list:
    with sqlite3.connect(srv.data_dir / "mailet-mta.sqlite3", timeout=30) as db:
        return db.execute(sql).fetchall()


def assert_no_backscatter(srv):
    """Nothing queued (a bounce to the forged sender would wait in the outgoing queue:
    its MX is a closed port), nothing left in the spool or a repository."""
    deadline = time.monotonic() + 10
    while rows(srv, "SELECT COUNT(*) FROM spool")[0][0] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rows(srv, "SELECT COUNT(*) FROM spool") == [(0,)]
    assert rows(srv, "SELECT recipients FROM outgoing") == []
    assert rows(srv, "SELECT repository FROM repository_mails") == []


def test_bare_postmaster_from_a_forged_outsider_reaches_the_postmaster_mailbox(server):
    assert send(server, "<postmaster>", "bare")[0] == 250
    assert send(server, "<PostMaster>", "bare mixed case")[0] == 250
    wait_for(lambda: {"bare", "bare mixed case"} <= set(subjects(
        server, "postmaster@example.com")), what="both mails in the postmaster mailbox")
    assert_no_backscatter(server)


def test_postmaster_at_own_ip_literal_reaches_the_postmaster_mailbox(server):
    code, _ = send(server, "<postmaster@[127.0.0.1]>", "literal")
    assert code == 250
    assert send(server, "<alice@[127.0.0.1]>", "alice literal")[0] == 250
    wait_for(lambda: "literal" in subjects(server, "postmaster@example.com"),
             what="the postmaster's mail")
    wait_for(lambda: "alice literal" in subjects(server, "alice@example.com"),
             what="alice's mail")
    assert_no_backscatter(server)


def test_unknown_user_is_refused_at_rcpt_and_nothing_is_spooled(server):
    code, text = send(server, "<nobody@example.com>", "unknown")
    assert (code, text[:5]) == (550, "5.1.1")
    code, text = send(server, "<nobody@[127.0.0.1]>", "unknown literal")
    assert (code, text[:5]) == (550, "5.1.1")
    assert rows(server, "SELECT COUNT(*) FROM spool") == [(0,)]
    assert_no_backscatter(server)


def test_aliases_managed_with_the_cli_are_accepted_and_delivered(server):
    added = server.cli("aliases", "add", "sales@example.com", "carol@example.com",
                       "postmaster@example.com")
    assert "alias sales@example.com -> carol@example.com added" in added.stdout
    listed = server.cli("aliases", "list").stdout
    assert "sales@example.com" in listed and "postmaster@example.com" in listed
    wait_for(lambda: send(server, "<Sales@example.com>", "to sales")[0] == 250,
             timeout=10, what="the running server to see the alias")
    wait_for(lambda: subjects(server, "carol@example.com") == ["to sales"],
             what="the alias's mail")
    wait_for(lambda: "to sales" in subjects(server, "postmaster@example.com"),
             what="the second target")

    server.cli("aliases", "remove", "sales@example.com")
    assert "sales@example.com" not in server.cli("aliases", "list").stdout
    wait_for(lambda: send(server, "<sales@example.com>", "gone")[0] == 550, timeout=10,
             what="the running server to drop the alias")
    bad = server.cli("aliases", "add", "sales@elsewhere.example", "alice@example.com",
                     check=False)
    assert bad.returncode == 1 and "domains add elsewhere.example" in bad.stderr
    assert_no_backscatter(server)


def test_error_mapping_and_alias_to_unknown_user_are_refused_at_rcpt(server):
    server.cli("aliases", "add", "gone@example.com", "error:550 5.1.1 left the company")
    server.cli("aliases", "add", "typo@example.com", "nobody@example.com")
    # the directory reloads each second: the error mapping's own reply says it has
    wait_for(lambda: send(server, "<gone@example.com>", "x") == (550, "5.1.1 left the company"),
             timeout=15, interval=0.2, what="the directory to take the new aliases")
    assert send(server, "<typo@example.com>", "x")[0] == 550
    assert_no_backscatter(server)


def test_mapping_in_the_configuration_is_accepted_at_rcpt_and_delivered(server):
    assert send(server, "<configured@example.com>", "configured alias")[0] == 250
    wait_for(lambda: "configured alias" in subjects(server, "alice@example.com"),
             what="the mail for configured@")
    listed = server.cli("aliases", "list").stdout
    assert "configured@example.com" in listed and "configuration" in listed
    assert_no_backscatter(server)


def test_alias_to_a_remote_address_is_relayed_to_the_other_server(servers):
    a, b = servers
    a.admin("aliases", "add", "bob@example.com", "bob@example.net")
    wait_for(lambda: send(a, "<bob@example.com>", "forwarded")[0] == 250,
             timeout=10, what="the running server to see the alias")
    got = wait_for(lambda: pop3(b, "bob@example.net"), timeout=60,
                   what="the forwarded mail on server B")
    msg = email.message_from_bytes(got[0])
    assert msg["Subject"] == "forwarded"
    assert msg["Return-Path"] == f"<{FORGED}>"
    assert_no_backscatter(a)
