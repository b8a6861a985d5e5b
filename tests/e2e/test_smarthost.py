"""The ``smarthost`` key between two real servers: A sends every outbound mail through
B, logging in with the user and password of A's configuration; while the mail waits in
A's queue, no byte of A's data directory holds the password."""

from __future__ import annotations

import email
import json
import smtplib
import socket

from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

PASSWORD = "user-pass-123"
RELAY_PASSWORD = "smarthost-secret-987"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pop3(srv, user):
    return pop3_messages(srv, user, PASSWORD)


def queued(a) -> list[dict]:
    return json.loads(a.admin("queue", "list", "--json"))


def test_all_outbound_mail_goes_through_the_smarthost_with_configured_credentials(
        tmp_path):
    port = free_port()
    # B takes mail only from clients that logged in (submission style), on a fixed port
    # so A's configuration can name it before B runs.
    b = ServerProcess(tmp_path / "b", base_config(
        tmp_path / "b" / "var", servernames=["example.net"],
        smtp=[{"name": "smtp", "listen": f"tcp:{port}:interface=127.0.0.1",
               "authRequired": True, "auth_before_mail": True,
               "authorizedAddresses": []}]), name="b")
    b.add_user("bob@example.net", PASSWORD)
    b.add_user("relay@example.net", RELAY_PASSWORD)
    a_cfg = base_config(tmp_path / "a" / "var", servernames=["example.com"],
                        smarthost={"host": f"127.0.0.1:{port}",
                                   "username": "relay@example.net",
                                   "password": RELAY_PASSWORD})
    relay = a_cfg["spoolmanager"]["processors"]["relay"]["mailets"][0]
    relay["parameters"].update({"delayTime": "20*1 second", "maxRetries": "20"})
    a = ServerProcess(tmp_path / "a", a_cfg, name="a")
    a.add_user("alice@example.com", PASSWORD)
    a.start()
    try:
        with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=10) as s:
            s.login("alice@example.com", PASSWORD)
            s.sendmail("alice@example.com", ["bob@example.net"],
                       b"From: alice@example.com\r\nTo: bob@example.net\r\n"
                       b"Subject: via the smarthost\r\n\r\nhello bob\r\n")
        # B is not up yet: the mail waits in A's queue, addressed to the smarthost.
        entry = wait_for(lambda: next((e for e in queued(a) if e["attempts"] >= 1), None),
                         timeout=30, what="a deferred attempt in A's queue")
        assert entry["options"]["gateways"] == [["127.0.0.1", port]]
        assert entry["options"]["gatewayUsername"] == "relay@example.net"
        assert "gatewayPassword" not in entry["options"]
        for path in (tmp_path / "a" / "var").rglob("*"):
            if path.is_file():
                assert RELAY_PASSWORD.encode() not in path.read_bytes(), path
        b.start()
        got = wait_for(lambda: pop3(b, "bob@example.net"), timeout=60,
                       what="the mail on B")
        assert email.message_from_bytes(got[0])["Subject"] == "via the smarthost"
        a.wait_log("status=sent")
    finally:
        a.stop()
        b.stop()
