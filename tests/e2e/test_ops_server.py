"""Operating a running server: metrics, status, SIGHUP reload, and what the log holds.

Each test starts ``mailet-mta serve`` as its own process on ephemeral loopback ports.
The pipeline is local-only (LocalDelivery, repositories), so these tests do not depend
on remote delivery.
"""

from __future__ import annotations

import base64
import json
import poplib
import re
import signal
import smtplib
import urllib.request

import pytest
import yaml

from tests.support.server import ServerProcess, base_config, wait_for

PASSWORD = "Tr0ub4dor&3-horse"
BODY_MARKER = "confidential-body-text-7f3a"

LOCAL_PROCESSORS = {
    "root": [{"match": "All", "class": "PostmasterAlias"},
             {"match": "RecipientIsLocal", "class": "LocalDelivery"},
             {"match": "All", "class": "ToRepository",
              "parameters": {"repositoryPath": "outgoing-hold"}}],
    "error": [{"match": "All", "class": "ToRepository",
               "parameters": {"repositoryPath": "error"}}],
}


def local_config(tmp_path, **extra) -> dict:
    return base_config(tmp_path / "var", processors=LOCAL_PROCESSORS, **extra)


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, local_config(
        tmp_path, metrics={"listen": "tcp:0:interface=127.0.0.1"}))
    srv.add_user("alice@example.com", PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def send(srv, subject="hello", to="alice@example.com", listener="smtp", login=False):
    msg = (f"From: carol@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n"
           f"{BODY_MARKER}\r\n").encode()
    with smtplib.SMTP("127.0.0.1", srv.port(listener), timeout=10) as s:
        if login:
            s.login("alice@example.com", PASSWORD)
        s.sendmail("alice@example.com" if login else "carol@example.org", [to], msg)


def pop3_count(srv, user="alice@example.com") -> int:
    box = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    try:
        box.user(user)
        box.pass_(PASSWORD)
        return box.stat()[0]
    finally:
        box.quit()


def scrape(srv) -> str:
    url = f"http://127.0.0.1:{srv.port('metrics')}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- metrics --------------------------------------------------------------------------
def test_metrics_endpoint_reports_a_locally_delivered_mail(server):
    before = scrape(server)
    assert metric(before, "mailet_mta_deliveries_total", relay="local", status="sent") == 0
    send(server, "counted")
    wait_for(lambda: pop3_count(server) == 1, what="delivery")
    after = scrape(server)
    assert metric(after, "mailet_mta_deliveries_total", relay="local", status="sent") == 1
    assert metric(after, "mailet_mta_smtp_accepted_mails_total", listener="smtp") == 1
    assert metric(after, "mailet_mta_connections_total", protocol="smtp",
                  listener="smtp") >= 1
    assert metric(after, "mailet_mta_processor_seconds_count", processor="root") >= 1
    assert "mailet_mta_spool_mails" in after


def test_metrics_count_a_relay_refusal_by_reason(tmp_path):
    srv = ServerProcess(tmp_path, local_config(
        tmp_path, metrics={"listen": "tcp:0:interface=127.0.0.1"},
        smtp=[{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1",
               "authRequired": "false", "authorizedAddresses": []}]))
    with srv:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            s.ehlo()
            s.mail("carol@example.org")
            code, _ = s.rcpt("bob@elsewhere.example")
        assert code == 550
        text = scrape(srv)
    assert metric(text, "mailet_mta_smtp_rejected_total",
                  reason="relay_denied_or_policy", code="550") == 1


# -- status ---------------------------------------------------------------------------
def test_status_reflects_a_mail_waiting_in_the_spool(tmp_path):
    processors = {
        "root": [{"match": "All", "class": "tests.support.plugins.Boom",
                  "onMailetException": "propagate"}],
        "error": [{"match": "All", "class": "ToRepository",
                   "parameters": {"repositoryPath": "error"}}],
    }
    srv = ServerProcess(tmp_path, base_config(tmp_path / "var", processors=processors))
    srv.add_user("alice@example.com", PASSWORD)
    with srv:
        send(srv, "stuck")

        def spool():    # the same command in this process: a poll is not a start-up
            report = json.loads(srv.admin("status", "--json"))
            return [s for s in report["spool"] if s["retrying"]] and report

        wait_for(spool, what="a retried mail in status")
        report = json.loads(srv.cli("status", "--json").stdout)
        table = srv.cli("status").stdout
    assert report["server"]["running"] is True
    assert {item["name"] for item in report["server"]["listeners"]} >= {"smtp", "pop3"}
    assert report["spool"] == [dict(report["spool"][0], state="root", mails=1, retrying=1)]
    assert report["repositories"][0] == {"repository": "error", "mails": 0,
                                         "error_repository": True}
    assert re.search(r"^root\s+1\s+1\s", table, re.M), table
    assert "server: running" in table
    after = srv.cli("status", "--json", check=False)
    assert after.returncode == 3                      # "not running", as systemctl says
    assert json.loads(after.stdout)["server"]["running"] is False


# -- SIGHUP ---------------------------------------------------------------------------
def test_sighup_with_a_broken_config_keeps_the_old_one(server):
    good = server.config_path.read_text()
    broken = yaml.safe_load(good)
    broken["spoolmanager"]["processors"]["root"][1]["class"] = "NoSuchMailet"
    server.config_path.write_text(yaml.safe_dump(broken, sort_keys=False))
    server.proc.send_signal(signal.SIGHUP)
    line = wait_for(lambda: [ln for ln in server.log_text().splitlines()
                             if "reload refused" in ln], what="the refusal in the log")[0]
    assert f"{server.config_path}:" in line and "NoSuchMailet" in line, line
    assert server.proc.poll() is None
    send(server, "after a bad reload")
    wait_for(lambda: pop3_count(server) == 1, what="delivery with the old pipeline")


def reload_local_mail_into_repository(srv, repository: str = "reloaded") -> None:
    """Rewrite the config so that local mail goes to ``repository``; send SIGHUP."""
    config = yaml.safe_load(srv.config_path.read_text())
    config["spoolmanager"]["processors"]["root"][1] = {
        "match": "RecipientIsLocal", "class": "ToRepository",
        "parameters": {"repositoryPath": repository}}
    srv.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    srv.proc.send_signal(signal.SIGHUP)


def test_sighup_applies_new_processors_to_new_mails(server):
    reload_local_mail_into_repository(server)
    wait_for(lambda: "configuration from" in server.log_text(), what="the reload")
    send(server, "after a good reload")
    wait_for(lambda: "reloaded" in server.admin("repository", "list"),
             what="the mail in the new repository")
    assert pop3_count(server) == 0


# -- the log --------------------------------------------------------------------------
def test_log_has_postfix_style_queued_and_delivered_lines(server):
    send(server, "grep me")
    wait_for(lambda: pop3_count(server) == 1, what="delivery")
    log = wait_for(lambda: "relay=local" in server.log_text() and server.log_text(),
                   what="the delivery line")
    queued = re.search(r"id=(\w+) listener=smtp client=\[127\.0\.0\.1\] helo=\S+ "
                       r"from=<carol@example\.org> size=\d+ nrcpt=1 status=queued", log)
    assert queued, log[-2000:]
    assert re.search(rf"id={queued.group(1)} from=<carol@example\.org> "
                     rf"to=<alice@example\.com> relay=local delay=\d+\.\d\d "
                     rf"status=sent \(delivered to mailbox INBOX\)", log), log[-2000:]


def test_a_whole_session_log_holds_neither_password_nor_body(tmp_path):
    srv = ServerProcess(tmp_path, local_config(tmp_path, logging={"level": "debug"}))
    srv.add_user("alice@example.com", PASSWORD)
    with srv:
        send(srv, "secret", to="alice@example.com", listener="submission", login=True)
        wait_for(lambda: pop3_count(srv) == 1, what="delivery")
        box = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
        box.user("alice@example.com")
        box.pass_(PASSWORD)
        assert BODY_MARKER.encode() in b"\r\n".join(box.retr(1)[1])
        box.quit()
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login("alice@example.com", PASSWORD + "-wrong")
    srv.wait_log("status=queued", "sasl_username=alice@example.com")
    log = srv.settled_log()
    plain = base64.b64encode(f"\0alice@example.com\0{PASSWORD}".encode()).decode()
    assert "status=queued" in log and "sasl_username=alice@example.com" in log
    for secret in (PASSWORD, plain, BODY_MARKER,
                   base64.b64encode(PASSWORD.encode()).decode()):
        assert secret not in log, secret
