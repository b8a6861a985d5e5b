"""``serve`` with ``workers: 2``: a supervisor and two worker processes sharing every
listener (SMTP, submission, SMTP over implicit TLS, POP3, POP3S, /metrics).

Each test starts the real command on ephemeral loopback ports; the supervisor's pid is
the one in listeners.json, the workers' are listed under ``workers``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import ssl
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_ops_server import LOCAL_PROCESSORS, reload_local_mail_into_repository
from tests.support.certs import make_cert
from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

PASSWORD = "Tr0ub4dor&3-horse"
USER = "alice@example.com"
# The Received trace line names the mail id; its first 23 hex digits are the prefix of
# the process that accepted it (mailet_mta.mail.new_mail_name).
TRACE_ID = re.compile(rb"^Received: .*?\r?\n?\s*by \S+ with \S+ id ([0-9a-f]{23})",
                      re.M | re.S)


def _config(tmp_path) -> dict:
    cert, key = make_cert(tmp_path / "tls")
    tls = {"certificate": str(cert), "privateKey": str(key)}
    return base_config(
        tmp_path / "var", processors=LOCAL_PROCESSORS, workers=2,
        smtp=[{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
               "authorizedAddresses": ["127.0.0.1/32"]},
              {"name": "smtps", "listen": "tcp:0:interface=127.0.0.1", "implicitTLS": True,
               "tls": tls, "authRequired": True, "authorizedAddresses": ["127.0.0.1/32"]}],
        pop3=[{"name": "pop3", "listen": "tcp:0:interface=127.0.0.1",
               "authFailureDelay": 0},
              {"name": "pop3s", "listen": "tcp:0:interface=127.0.0.1",
               "implicitTLS": True, "tls": tls, "authFailureDelay": 0}],
        metrics={"listen": "tcp:0:interface=127.0.0.1"},
        webadmin={"enabled": True, "port": 0}, webmail={"enabled": True, "port": 0})


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, _config(tmp_path))
    srv.add_user(USER, PASSWORD)
    srv.start()
    yield srv
    srv.stop(timeout=60)


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def send(srv, subject: str, listener: str = "smtp") -> None:
    msg = f"From: carol@example.org\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\nbody\r\n"
    if listener == "smtps":
        client = smtplib.SMTP_SSL("127.0.0.1", srv.port(listener), timeout=10,
                                  context=_client_tls())
    else:
        client = smtplib.SMTP("127.0.0.1", srv.port(listener), timeout=10)
    with client as s:
        s.sendmail("carol@example.org", [USER], msg.encode())


def messages(srv, listener: str = "pop3") -> list[bytes]:
    return pop3_messages(srv, USER, PASSWORD, listener,
                         _client_tls() if listener == "pop3s" else None)


def worker_pids(srv) -> dict[int, int]:
    return {w["index"]: w["pid"] for w in srv.info().get("workers", [])}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def scrape(srv) -> str:
    url = f"http://127.0.0.1:{srv.port('metrics')}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def accepted_in_scrape(text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mailet_mta_smtp_accepted_mails_total{"))


def test_two_workers_share_every_listener_and_the_mail_spreads_over_both(server):
    pids = worker_pids(server)
    assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
    assert server.info()["pid"] == server.proc.pid not in pids.values()
    assert all(alive(pid) for pid in pids.values())
    for n in range(24):                     # one connection per mail
        send(server, f"plain {n}")
    send(server, "over implicit TLS", listener="smtps")
    wait_for(lambda: len(messages(server)) == 25, what="25 mails delivered")
    over_tls = messages(server, "pop3s")
    assert len(over_tls) == 25 and any(b"over implicit TLS" in m for m in over_tls)
    accepted_by = {TRACE_ID.search(m).group(1) for m in over_tls}
    assert len(accepted_by) == 2, "every mail was accepted by the same worker"
    # /metrics adds up both workers, whichever answers the scrape.
    for _ in range(4):
        assert accepted_in_scrape(scrape(server)) == 25
    # The admin API is a listener the workers share too.
    for _ in range(4):
        url = f"http://127.0.0.1:{server.port('webadmin')}/healthcheck"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert json.loads(response.read())["status"] == "healthy"
    # Webmail runs in every worker with its sessions in the database: a session made
    # by one worker is served by the other (every request on a new connection, which
    # the kernel spreads over both; a worker that did not know it would answer 303).
    webmail_session_works_in_every_worker(server)
    held = [smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) for _ in range(6)]
    try:
        for _ in range(4):
            assert 'mailet_mta_open_sessions{listener="smtp",protocol="smtp"} 6.0' \
                in scrape(server)
    finally:
        for client in held:
            client.quit()


def webmail_session_works_in_every_worker(server) -> None:
    import httpx

    base = f"http://127.0.0.1:{server.port('webmail')}"
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=base, timeout=30, limits=fresh) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        answer = client.post("/login", data={"csrf": token, "username": USER,
                                             "password": PASSWORD})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/mail")
        codes = [client.get("/mail", params={"folder": "INBOX"}).status_code
                 for _ in range(16)]
        assert codes == [200] * 16, codes
        form = client.get("/compose")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        sent = client.post("/send", data={"csrf": csrf, "to": USER,
                                          "subject": "from a worker's webmail",
                                          "body": "hello"})
        assert sent.status_code == 303, sent.text
        out = client.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert [client.get("/mail").status_code for _ in range(4)] == [303] * 4
    wait_for(lambda: any(b"from a worker's webmail" in m for m in messages(server)),
             what="the webmail's mail delivered")


def test_status_shows_the_supervisor_and_both_workers_with_totals(server):
    send(server, "counted")
    wait_for(lambda: len(messages(server)) == 1, what="delivery")
    result = server.cli("status", "--json")
    report = json.loads(result.stdout)
    assert report["server"]["running"] is True
    assert report["server"]["pid"] == server.proc.pid
    workers = report["workers"]
    assert sorted(w["pid"] for w in workers["workers"]) == sorted(worker_pids(server).values())
    assert all(w["running"] for w in workers["workers"])
    assert workers["total"]["running"] == 2

    def totals():       # the same command in this process: a poll is not a start-up
        report = json.loads(server.admin("status", "--json"))["workers"]
        return report["total"]["accepted"] == 1 and report

    workers = wait_for(totals, timeout=25, interval=0.2, what="the heartbeats' counts")
    assert sorted(w["accepted"] for w in workers["workers"]) == [0, 1]
    assert workers["total"]["delivered"] == 1
    table = server.cli("status").stdout
    assert "workers: 2 running of 2" in table
    for pid in worker_pids(server).values():
        assert str(pid) in table


def test_sighup_reloads_the_configuration_in_every_worker(server):
    reload_local_mail_into_repository(server)
    wait_for(lambda: server.log_text().count("reload: configuration from") == 2,
             what="both workers reloaded")
    for n in range(12):
        send(server, f"after reload {n}")
    wait_for(lambda: server.admin("repository", "list").count("reloaded") >= 1,
             what="mails in the new repository")
    listing = server.cli("repository", "list", "--json", check=False).stdout
    assert messages(server) == [], listing
    assert server.info()["pid"] == server.proc.pid and len(worker_pids(server)) == 2


def test_a_killed_worker_is_restarted_and_sigterm_stops_every_process(server):
    before = worker_pids(server)
    os.kill(before[0], signal.SIGKILL)
    after = wait_for(lambda: (p := worker_pids(server)).get(0) not in (None, before[0])
                     and len(p) == 2 and p, timeout=30, what="worker 0 restarted")
    assert after[1] == before[1] and alive(after[0])
    server.wait_log("worker 0 (pid %d) was killed by SIGKILL; restarting" % before[0])
    for n in range(6):
        send(server, f"after restart {n}")
    wait_for(lambda: len(messages(server)) == 6, what="delivery after the restart")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 30
    assert not any(alive(pid) for pid in after.values())
    assert not (server.data_dir / "listeners.json").exists()


def test_a_worker_that_cannot_start_stops_the_supervisor_with_one_clear_line(tmp_path):
    config = _config(tmp_path)
    config["storage"]["url"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    srv = ServerProcess(tmp_path, config)
    with pytest.raises(RuntimeError, match="exited with 1"):
        srv.start(timeout=60)
    assert "cannot open the database" in srv.log_text()


def test_workers_refuse_a_listener_they_cannot_share(tmp_path):
    config = _config(tmp_path)
    config["pop3servers"][0]["listen"] = f"unix:{tmp_path}/pop3.sock"
    srv = ServerProcess(tmp_path, config)
    with pytest.raises(RuntimeError, match="exited with 1"):
        srv.start(timeout=60)
    assert "cannot be shared by worker processes" in srv.log_text()


def test_twistd_runs_one_process_whatever_workers_says(tmp_path):
    srv = ServerProcess(tmp_path, _config(tmp_path), name="twistd")
    srv.command = [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=",
                   "mailet-mta", "--config", str(srv.config_path)]
    srv.add_user(USER, PASSWORD)
    srv.start()
    try:
        assert "workers" not in srv.info()
        assert "twistd runs one process: workers (2) applies to mailet-mta serve" \
            in srv.log_text()
        send(srv, "via twistd")
        wait_for(lambda: len(messages(srv)) == 1, what="delivery under twistd")
    finally:
        srv.stop()


def test_start_up_warnings_are_logged_once_not_by_every_worker(tmp_path):
    srv = ServerProcess(tmp_path, _config(tmp_path))     # no user: nobody can log in
    with srv:
        wait_for(lambda: len(worker_pids(srv)) == 2, what="both workers")
    assert srv.log_text().count("no user exists") == 1, srv.log_text()[-3000:]
