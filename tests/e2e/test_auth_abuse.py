"""Authentication abuse and the AUTH details an administrator relies on, against a real
``mailet-mta serve`` with smtplib and poplib.

- 39 parallel wrong passwords from one address get at most the budget (5) verified;
  the right password afterwards gets ``454 4.7.0``, and so does POP3 from that address.
- The embedded default configuration's submission port takes AUTH + send from
  127.0.0.1 (an authorized network that may also relay without AUTH).
- AUTH before EHLO is 503; the recipient limit counts RCPT commands; a MAIL parameter
  repeated with the same value (as smtplib writes SIZE) is accepted.
"""

from __future__ import annotations

import poplib
import re
import smtplib
import socket
import threading
import time

import pytest

from tests.support.server import ROOT, ServerProcess, base_config

PASSWORD = "auth abuse password"
USER = "alice@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    smtp = [{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
             "authorizedAddresses": ["127.0.0.1/32"], "maxRecipients": 100}]
    config = base_config(root / "var", smtp=smtp, authThrottle={"maxFailures": 5})
    srv = ServerProcess(root, config)
    srv.add_user(USER, PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def auth_plain(port: int, source: str, password: str, barrier=None) -> tuple[int, bytes]:
    """One AUTH PLAIN exchange (a single attempt, unlike smtplib.login's fallbacks)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as s:
        s.ehlo("race.example")
        if barrier is not None:
            barrier.wait(20)
        s.user, s.password = USER, password
        try:
            return s.auth("PLAIN", s.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code, exc.smtp_error


def test_parallel_auth_burst_gets_at_most_the_budget_verified_then_454(server):
    attacker, port = "127.0.0.61", server.port("smtp")
    barrier = threading.Barrier(39)
    codes: list[int] = []
    lock = threading.Lock()

    def attempt(i):
        code, _ = auth_plain(port, attacker, f"wrong {i}", barrier)
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(39)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(codes) == 39, codes
    code, text = auth_plain(port, attacker, PASSWORD)
    assert (code, text[:5]) == (454, b"4.7.0"), (code, text)
    checked = len(re.findall(r"login failed: wrong password for .* from 127\.0\.0\.61",
                             server.settled_log()))
    print(f"39 parallel wrong passwords: {codes.count(535)} x 535 (checked: {checked}), "
          f"{codes.count(454)} x 454 in {time.monotonic() - started:.1f}s")
    assert 1 <= checked <= 5 and codes.count(535) == checked
    assert codes.count(454) == 39 - checked
    # The address is refused by every protocol; the user still logs in from elsewhere.
    pop = POP3From(attacker, "127.0.0.1", server.port("pop3"), timeout=10)
    pop.user(USER)
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
        pop.pass_(PASSWORD)
    pop.close()
    assert auth_plain(port, "127.0.0.62", PASSWORD)[0] == 235


class POP3From(poplib.POP3):
    """poplib's client, connecting from a chosen loopback address."""

    def __init__(self, source: str, *args, **kw):
        self.source = source
        super().__init__(*args, **kw)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


def test_auth_before_ehlo_is_503(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10,
                      source_address=("127.0.0.63", 0)) as s:
        assert s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHg=")[0] == 503
        assert s.docmd("MAIL", "FROM:<a@remote.example>")[0] == 503
        s.ehlo("client.example")
        s.user, s.password = USER, PASSWORD
        assert s.auth("PLAIN", s.auth_plain)[0] == 235


def test_recipient_limit_counts_rcpt_commands(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.ehlo("client.example")
        s.mail("carol@client.example")
        codes = [s.rcpt(("alice@example.com", "postmaster@example.com")[i % 2])[0]
                 for i in range(105)]
        assert codes == [250] * 100 + [452] * 5
        s.rset()


def test_size_given_twice_with_the_same_value_is_accepted(server):
    msg = b"Subject: size twice\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.ehlo("client.example")
        # smtplib adds size=<len> itself: the command carries "size=33 SIZE=33".
        assert s.sendmail("carol@client.example", [USER], msg,
                          mail_options=[f"SIZE={len(msg)}"]) == {}
        assert s.docmd("MAIL", "FROM:<carol@client.example> SIZE=10 SIZE=20")[0] == 501


@pytest.fixture
def embedded_default(tmp_path):
    """``mailet-mta serve`` on the shipped default YAML, ports moved to 0."""
    text = (ROOT / "mailet_mta" / "config" / "defaults" / "default.yaml").read_text()
    text, n = re.subn(r"tcp:\d+:interface=127\.0\.0\.1", "tcp:0:interface=127.0.0.1", text)
    assert n == 4
    path = tmp_path / "default.yaml"
    path.write_text(text)
    srv = ServerProcess(tmp_path, config_path=path, name="default")
    srv.add_user("alice@localhost", PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def test_embedded_default_submission_accepts_auth_and_send_from_loopback(embedded_default):
    msg = b"Subject: submitted\r\n\r\nhello\r\n"
    for listener in ("submission", "smtp"):
        with smtplib.SMTP("127.0.0.1", embedded_default.port(listener), timeout=10) as s:
            s.ehlo("client.example")
            assert s.has_extn("auth"), listener
            assert s.login("alice@localhost", PASSWORD)[0] == 235
            assert s.sendmail("alice@localhost", ["alice@localhost"], msg) == {}
