"""Outbound TLS policy through real servers: A (``tlsPolicy.caFile`` naming a test CA)
relays to B, whose domain publishes an MTA-STS policy in a DNS zone on 127.0.0.1 and
serves it over HTTPS from a thread of this test; B offers STARTTLS with a certificate
for mx.b.test. Under ``enforce`` the mail reaches B over verified TLS and
``mailet-mta tls-report`` on A counts the session; when the policy lists another MX
the mail stays queued on A with 4.7.5."""

from __future__ import annotations

import datetime
import http.server
import json
import smtplib
import ssl
import threading

import pytest

from tests.support.certs import make_trusted_certs
from tests.support.dns_zone import ZoneServer
from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

PASSWORD = "auth-pass-123"


def policy_server(cert, key, body: dict):
    """An HTTPS server on 127.0.0.1 answering every GET with ``body["text"]``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = body["text"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def pair(tmp_path):
    certs, ca_file = make_trusted_certs(tmp_path / "certs", "mta-sts.b.test", "mx.b.test")
    (sts_cert, sts_key), (mx_cert, mx_key) = certs["mta-sts.b.test"], certs["mx.b.test"]
    body = {"text": "version: STSv1\nmode: enforce\nmx: mx.b.test\nmax_age: 86400\n"}
    httpd = policy_server(sts_cert, sts_key, body)
    zone = ZoneServer({"_mta-sts.b.test": [("TXT", "v=STSv1; id=1")],
                       "mx.b.test": [("A", "127.0.0.1")]}).start()
    b_cfg = base_config(tmp_path / "b" / "var", servernames=["b.test"], smtp=[
        {"name": "smtp", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
         "authorizedAddresses": [],
         "tls": {"certificate": str(mx_cert), "privateKey": str(mx_key)}}])
    b = ServerProcess(tmp_path / "b", b_cfg, name="b")
    b.add_user("bob@b.test", PASSWORD)
    b.start()
    a_cfg = base_config(tmp_path / "a" / "var", servernames=["a.test"])
    a_cfg["dns"] = {"servers": [zone.address], "timeout": 2, "hosts": {
        "b.test": [f"mx.b.test:{b.port('smtp')}"],
        "mta-sts.b.test": [f"127.0.0.1:{httpd.server_address[1]}"]}}
    a_cfg["tlsPolicy"] = {"mtaSts": True, "caFile": str(ca_file), "fetchTimeout": "10s"}
    relay = a_cfg["spoolmanager"]["processors"]["relay"]["mailets"][0]
    relay["parameters"]["delayTime"] = "1 hour"
    a = ServerProcess(tmp_path / "a", a_cfg, name="a")
    a.add_user("alice@a.test", PASSWORD)
    yield a, b, body
    a.stop()
    b.stop()
    zone.stop()
    httpd.shutdown()


def send(a, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=10) as s:
        s.login("alice@a.test", PASSWORD)
        s.sendmail("alice@a.test", ["bob@b.test"],
                   f"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: {subject}\r\n\r\n"
                   f"hello\r\n".encode())


def test_enforce_delivers_over_verified_tls_and_counts_the_session(pair):
    a, b, _body = pair
    a.start()
    send(a, "over verified TLS")
    got = wait_for(lambda: pop3_messages(b, "bob@b.test", PASSWORD), timeout=60,
                   what="the mail on server B")
    assert b"over verified TLS" in got[0]
    assert b"ESMTPS" in got[0]              # B's Received line: it came over TLS
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    report = wait_for(lambda: json.loads(a.admin("tls-report", "--day", today, "--domain",
                                                 "b.test", check=False) or "null"),
                      timeout=20, what="the TLS-RPT count")
    [policy] = report["policies"]
    assert policy["policy"] == {"policy-type": "sts", "policy-domain": "b.test"}
    assert policy["summary"]["total-successful-session-count"] >= 1


def test_enforce_with_no_matching_mx_keeps_the_mail_queued_with_4_7_5(pair):
    a, b, body = pair
    body["text"] = "version: STSv1\nmode: enforce\nmx: other.b.test\nmax_age: 86400\n"
    a.start()
    send(a, "must not leave")
    wait_for(lambda: "4.7.5" in a.admin("queue", "show", "1", check=False),
             timeout=60, what="the deferred mail in A's queue")
    assert pop3_messages(b, "bob@b.test", PASSWORD) == []
