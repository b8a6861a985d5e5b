"""End to end through the real CLI: SMTP in, the pipeline, mailbox, POP3 out; crashes.

Each test starts ``mailet-mta serve`` as its own process on ephemeral loopback ports
and talks to it with clients we did not write (smtplib, poplib, swaks, curl).
"""

from __future__ import annotations

import email
import poplib
import shutil
import smtplib
import subprocess
import sys
import threading

import pytest

from tests.support.server import ServerProcess, base_config, wait_for

PASSWORD = "correct horse battery"


# The tests that only send and read share one server, each with mailboxes of its own
# (what one delivers is never in another's); the crash tests kill theirs.
USERS = ["alice@example.com", "bob@example.com", "alice.flow@example.com",
         "alice.trail@example.com", "bob.swaks@example.com", "alice.curl@example.com"]


def start_server(workdir):
    srv = ServerProcess(workdir, base_config(workdir / "var"))
    for user in USERS:
        srv.add_user(user, PASSWORD)
    return srv.start()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("flow") / "a")
    yield srv
    srv.stop()


@pytest.fixture
def server(tmp_path):
    srv = start_server(tmp_path / "a")
    yield srv
    srv.stop()


def message(subject: str, body: str = "Hello there.\r\n", frm="carol@example.org",
            to="alice@example.com") -> bytes:
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n\r\n{body}").encode()


def pop3_messages(srv, user="alice@example.com", password=PASSWORD) -> list[bytes]:
    box = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    try:
        box.user(user)
        box.pass_(password)
        count, _size = box.stat()
        return [b"\r\n".join(box.retr(i + 1)[1]) + b"\r\n" for i in range(count)]
    finally:
        box.quit()


def test_mail_sent_with_smtplib_is_read_back_with_poplib(shared_server):
    server = shared_server
    body = "line one\r\n.starts with a dot\r\n..two dots\r\n" + "x" * 998 + "\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        refused = s.sendmail("carol@example.org", ["alice.flow@example.com"],
                             message("flow one", body, to="alice.flow@example.com"))
    assert refused == {}
    got = wait_for(lambda: pop3_messages(server, "alice.flow@example.com"),
                   what="the mail in alice's mailbox")
    assert len(got) == 1
    raw = got[0]
    parsed = email.message_from_bytes(raw)
    assert parsed["Return-Path"] == "<carol@example.org>"
    assert parsed["Delivered-To"] == "alice.flow@example.com"
    assert "by example.com" in " ".join(parsed["Received"].split())
    assert raw.endswith(message("flow one", body).split(b"\r\n\r\n", 1)[1])
    assert b"Subject: flow one\r\n" in raw


def test_every_mail_leaves_a_queued_and_a_sent_line_at_info(shared_server):
    server = shared_server
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.sendmail("carol@example.org", ["alice.trail@example.com"],
                   message("trail", to="alice.trail@example.com"))
    wait_for(lambda: pop3_messages(server, "alice.trail@example.com"), what="delivery")
    # The server is shared: this mail's delivery line, then its whole trail by its id.
    log = server.wait_log("to=<alice.trail@example.com> relay=local")
    [sent] = [line for line in log.splitlines()
              if "to=<alice.trail@example.com> relay=local" in line]
    trail = [line for line in log.splitlines()
             if f"id={sent.split('id=')[1].split()[0]} " in line]
    assert len(trail) == 2, trail          # one at acceptance, one per delivery
    assert "status=queued" in trail[0] and trail[1] == sent
    assert "processor=" not in log         # the processors are debug lines


def test_at_debug_the_log_names_every_processor_a_mail_runs_through(tmp_path):
    srv = ServerProcess(tmp_path / "d", base_config(tmp_path / "d" / "var",
                                                     logging={"level": "debug"}))
    srv.add_user("alice@example.com", PASSWORD)
    with srv:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            s.sendmail("carol@example.org", ["alice@example.com"], message("trail"))
        wait_for(lambda: "status=sent" in srv.log_text(), what="delivery")
        log = srv.log_text()
    ids = [line.split("id=")[1].split()[0] for line in log.splitlines()
           if "processor=root" in line]
    assert ids, log[-2000:]
    trail = [line for line in log.splitlines() if f"id={ids[-1]}" in line]
    assert any("processor=transport" in line for line in trail)
    assert any("processor=local-delivery" in line for line in trail)
    assert any("[mailet_mta.spool#debug]" in line for line in trail)


def test_unknown_local_user_is_refused_at_rcpt_with_550_5_1_1(shared_server):
    server = shared_server
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.ehlo("client.example.org")
        s.mail("carol@example.org")
        code, text = s.rcpt("nobody@example.com")
    assert code == 550 and b"5.1.1" in text


def test_relay_from_outside_authorized_addresses_without_auth_is_refused(shared_server):
    server = shared_server
    # 127.0.0.2 is outside authorizedAddresses (127.0.0.1/32): AUTH is offered → 530.
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10,
                      source_address=("127.0.0.2", 0)) as s:
        s.ehlo("client.example.org")
        s.mail("carol@example.org")
        code, text = s.rcpt("someone@remote.example")
    assert code == 530 and b"5.7.1" in text


def test_submission_requires_auth_and_verifies_identity(shared_server):
    server = shared_server
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as s:
        s.ehlo("client.example.org")
        code, _ = s.mail("alice@example.com")
        assert code == 530
        s.login("alice@example.com", PASSWORD)
        code, _ = s.mail("bob@example.com")           # alice sending as bob
        assert code == 553
        s.rset()
        code, _ = s.mail("alice@example.com")
        assert code == 250
        assert s.rcpt("bob@example.com")[0] == 250
        assert s.data(message("from alice", to="bob@example.com"))[0] == 250
    got = wait_for(lambda: pop3_messages(server, "bob@example.com"), what="bob's mail")
    assert b"Subject: from alice" in got[0]


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_delivers_with_auth_plain_on_submission(shared_server):
    server = shared_server
    out = subprocess.run(["swaks", "--server", f"127.0.0.1:{server.port('submission')}",
                          "--from", "alice@example.com", "--to", "bob.swaks@example.com",
                          "--auth", "PLAIN", "--auth-user", "alice@example.com",
                          "--auth-password", PASSWORD, "--header", "Subject: via swaks",
                          "--timeout", "10"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250" in out.stdout
    got = wait_for(lambda: pop3_messages(server, "bob.swaks@example.com"), what="swaks mail")
    assert b"Subject: via swaks" in got[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_sends_over_smtp_and_reads_over_pop3(shared_server, tmp_path):
    server = shared_server
    mail_file = tmp_path / "mail.txt"
    mail_file.write_bytes(message("via curl", to="alice.curl@example.com"))
    out = subprocess.run(["curl", "-sS", f"smtp://127.0.0.1:{server.port('smtp')}",
                          "--mail-from", "carol@example.org", "--mail-rcpt",
                          "alice.curl@example.com", "--upload-file", str(mail_file)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: pop3_messages(server, "alice.curl@example.com"), what="curl mail")
    got = subprocess.run(["curl", "-sS", "--user", f"alice.curl@example.com:{PASSWORD}",
                          f"pop3://127.0.0.1:{server.port('pop3')}/1"],
                         capture_output=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert b"Subject: via curl" in got.stdout


def send_numbered(port: int, start: int, count: int, results: list, stop=None):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for i in range(start, start + count):
            if stop is not None and stop.is_set():
                return
            try:
                s.sendmail("carol@example.org", ["alice@example.com"], message(f"n{i}"))
            except (smtplib.SMTPException, OSError):
                return
            results.append(i)


def delivered_subjects(srv) -> list[str]:
    return [email.message_from_bytes(m)["Subject"] for m in pop3_messages(srv)]


def test_kill_9_mid_run_then_restart_every_accepted_mail_is_delivered_exactly_once(server):
    accepted: list[int] = []
    threads = [threading.Thread(target=send_numbered,
                                args=(server.port("smtp"), k * 50, 50, accepted))
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(accepted) == 200
    server.kill()                      # right after the last 250: processing still running
    server.start()
    wanted = sorted(f"n{i}" for i in accepted)
    wait_for(lambda: len(delivered_subjects(server)) >= len(wanted), timeout=60,
             what="all 200 mails delivered after the restart")
    subjects = delivered_subjects(server)
    assert sorted(subjects) == wanted          # none lost, none twice


def test_kill_9_while_clients_are_sending_loses_no_mail_that_got_250(server):
    accepted: list[int] = []
    stop = threading.Event()
    threads = [threading.Thread(target=send_numbered,
                                args=(server.port("smtp"), k * 1000, 1000, accepted, stop))
               for k in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(accepted) >= 80, timeout=60, what="some accepted mails")
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    got = list(accepted)
    server.start()
    wait_for(lambda: len(delivered_subjects(server)) >= len(got), timeout=60,
             what="every mail that got 250")
    subjects = delivered_subjects(server)
    assert set(f"n{i}" for i in got) <= set(subjects)
    assert len(subjects) == len(set(subjects))   # no duplicates


def test_twistd_runs_the_same_server(tmp_path):
    bindir = sys.executable.rsplit("/", 1)[0]
    srv = ServerProcess(tmp_path / "t", base_config(tmp_path / "t" / "var"), name="twistd")
    srv.command = [f"{bindir}/twistd", "-n", "--pidfile=", "mailet-mta", "--config",
                   str(srv.config_path)]
    srv.add_user("alice@example.com", PASSWORD)
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            s.sendmail("carol@example.org", ["alice@example.com"], message("via twistd"))
        got = wait_for(lambda: pop3_messages(srv), what="delivery under twistd")
        assert b"Subject: via twistd" in got[0]
    finally:
        srv.stop()
