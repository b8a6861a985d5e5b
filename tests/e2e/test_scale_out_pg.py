"""Several mailet-mta processes on one PostgreSQL: disjoint work, take-over, shared locks.

Each node has its own data directory and listeners; they share the database (a fresh
schema per test) and one blob directory, as docs/scaling.md describes.
"""

from __future__ import annotations

import collections
import poplib
import smtplib
import threading

import pytest
import sqlalchemy as sa

from tests.support.server import ServerProcess, base_config, wait_for

PASSWORD = "cluster-pass"


def node_config(tmp_path, name, pg_url, lease="3s"):
    cfg = base_config(tmp_path / name / "var")
    cfg["storage"] = {"data_dir": str(tmp_path / name / "var"), "url": pg_url,
                      "blob_dir": str(tmp_path / "shared-blobs"), "inline_blob_limit": 2048}
    cfg["spoolmanager"]["lease_seconds"] = lease
    cfg["logging"] = {"level": "warn"}
    return cfg


@pytest.fixture
def cluster(tmp_path, pg_url):
    nodes = []

    def start(name, **kw):
        srv = ServerProcess(tmp_path / name, node_config(tmp_path, name, pg_url, **kw), name=name)
        srv.command = None
        nodes.append(srv)
        return srv

    yield start
    for srv in nodes:
        srv.stop()


def delivered(pg_url) -> collections.Counter:
    """Message-ID → how many mailbox rows carry it (read from the shared blobs)."""
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id")).all()
    finally:
        engine.dispose()
    counts = collections.Counter()
    for (data,) in rows:
        for line in bytes(data).split(b"\r\n"):
            if line.lower().startswith(b"subject: n"):
                counts[line.split(b":", 1)[1].strip().decode()] += 1
                break
    return counts


def send(port, numbers, accepted, stop=None):
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        for i in numbers:
            if stop is not None and stop.is_set():
                return
            try:
                s.sendmail("carol@example.org", ["alice@example.com"],
                           f"From: carol@example.org\r\nSubject: n{i}\r\n\r\nbody {i}\r\n".encode())
            except (smtplib.SMTPException, OSError):
                return
            accepted.append(i)


def test_two_nodes_deliver_2000_mails_each_exactly_once(cluster, pg_url):
    a = cluster("a")
    a.add_user("alice@example.com", PASSWORD)
    a.start()
    b = cluster("b").start()
    accepted: list[int] = []
    threads = []
    for k in range(8):
        node = a if k % 2 == 0 else b
        threads.append(threading.Thread(target=send, args=(
            node.port("smtp"), range(k * 250, (k + 1) * 250), accepted)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert len(accepted) == 2000
    counts = wait_for(lambda: (c := delivered(pg_url)) and sum(c.values()) >= 2000 and c,
                      timeout=300, interval=0.25, what="2000 deliveries")
    assert len(counts) == 2000 and set(counts.values()) == {1}
    nodes = a.cli("nodes").stdout
    assert a.proc and str(a.proc.pid) in nodes and str(b.proc.pid) in nodes


def test_killed_node_work_is_finished_by_the_other_after_its_lease(cluster, pg_url):
    a = cluster("a", lease="3s")
    a.add_user("alice@example.com", PASSWORD)
    a.start()
    cluster("b", lease="3s").start()                 # b finishes a's mails
    accepted: list[int] = []
    stop = threading.Event()
    sender = threading.Thread(target=send, args=(a.port("smtp"), range(600), accepted, stop))
    sender.start()
    wait_for(lambda: len(accepted) >= 150, timeout=120, what="mails accepted by node a")
    a.kill()
    stop.set()
    sender.join(60)
    got = list(accepted)
    names = {f"n{i}" for i in got}
    counts = wait_for(lambda: (c := delivered(pg_url)) and names <= set(c) and c,
                      timeout=120, interval=0.25, what="node b finishing node a's mails")
    assert all(counts[f"n{i}"] == 1 for i in got)
    assert max(counts.values()) == 1


def test_pop3_session_on_one_node_blocks_a_second_on_the_other(cluster, pg_url):
    a = cluster("a")
    a.add_user("alice@example.com", PASSWORD)
    a.start()
    b = cluster("b").start()
    first = poplib.POP3("127.0.0.1", a.port("pop3"), timeout=10)
    first.user("alice@example.com")
    first.pass_(PASSWORD)
    try:
        second = poplib.POP3("127.0.0.1", b.port("pop3"), timeout=10)
        second.user("alice@example.com")
        with pytest.raises(poplib.error_proto, match="IN-USE"):
            second.pass_(PASSWORD)
        second.close()
    finally:
        first.quit()
    third = poplib.POP3("127.0.0.1", b.port("pop3"), timeout=10)
    third.user("alice@example.com")
    assert third.pass_(PASSWORD).startswith(b"+OK")
    third.quit()


def test_a_webmail_session_made_on_one_node_is_served_by_the_other(tmp_path, pg_url):
    import re

    import httpx

    nodes = []
    for name in ("a", "b"):
        cfg = node_config(tmp_path, name, pg_url)
        cfg["webmail"] = {"enabled": True, "port": 0}
        nodes.append(ServerProcess(tmp_path / name, cfg, name=name))
    a, b = nodes
    try:
        a.add_user("alice@example.com", PASSWORD)
        a.start()
        b.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{a.port('webmail')}",
                          timeout=30) as on_a:
            page = on_a.get("/login")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            answer = on_a.post("/login", data={"csrf": token, "username": "alice@example.com",
                                               "password": PASSWORD})
            assert answer.status_code == 303
            cookies = {"mailet_session": on_a.cookies["mailet_session"]}
            with httpx.Client(base_url=f"http://127.0.0.1:{b.port('webmail')}",
                              cookies=cookies, timeout=30) as on_b:
                listing = on_b.get("/mail", params={"folder": "INBOX"})
                assert listing.status_code == 200 and "alice@example.com" in listing.text
                csrf = re.search(r'name="csrf" value="([^"]+)"', listing.text).group(1)
                # a send from node b uses node b's own internal credential
                sent = on_b.post("/send", data={"csrf": csrf, "to": "alice@example.com",
                                                "subject": "n-webmail", "body": "x"})
                assert sent.status_code == 303, sent.text
                # logging out on b ends the session on a too
                assert on_b.post("/logout", data={"csrf": csrf}).status_code == 303
            assert on_a.get("/mail").status_code == 303
        wait_for(lambda: delivered(pg_url)["n-webmail"] == 2,   # INBOX and Sent
                 what="the webmail's mail in INBOX and Sent")
    finally:
        for srv in nodes:
            srv.stop()
