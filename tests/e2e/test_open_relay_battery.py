"""Open-relay and spoofing battery against a real ``mailet-mta`` process.

Every trick that has made a mail server relay for strangers or accept a forged
sender (James, Postfix, Haraka, sendmail advisories): percent hack, source routes,
quoted local parts holding ``@``, IP literals, bang paths, ``user@a@b``, null-sender
relays, case and trailing-dot games, an authenticated user sending as another, and
a client outside ``authorizedAddresses`` (a proxy's second hop). The client is
``smtplib`` from 127.0.0.2 — outside ``authorizedAddresses`` (127.0.0.1/32) — unless a
test says otherwise. Local-domain tricks may be accepted at RCPT, but then the mail
must stay here: at the end nothing may have reached the ``relay`` processor except the
mails relayed on purpose by an authenticated or authorized client.
"""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.soak.harness import local_only_processors
from tests.support.server import ServerProcess, base_config

PASSWORD = "relay battery pw"
OUTSIDE = ("127.0.0.2", 0)
REFUSED = (530, 550, 553, 501, 555)

# (name, recipient) — none of these may be relayed for an unauthenticated outsider.
RELAY_TRICKS = [
    ("plain_remote", "<victim@remote.example>"),
    ("percent_hack", "<victim%remote.example@example.com>"),
    ("percent_hack_ip_literal", "<victim%remote.example@[127.0.0.1]>"),
    ("double_percent", "<victim%remote.example%example.com@example.com>"),
    ("source_route", "<@example.com:victim@remote.example>"),
    ("source_route_two_hops", "<@example.com,@mx.example.com:victim@remote.example>"),
    ("quoted_local_with_at", '<"victim@remote.example"@example.com>'),
    ("quoted_local_with_percent", '<"victim%remote.example"@example.com>'),
    ("bang_path", "<remote.example!victim@example.com>"),
    ("bang_path_bare", "<remote.example!victim>"),
    ("user_at_a_at_b", "<victim@remote.example@example.com>"),
    ("user_at_local_at_remote", "<victim@example.com@remote.example>"),
    ("ip_literal_foreign", "<victim@[192.0.2.1]>"),
    ("ipv6_literal_foreign", "<victim@[IPv6:2001:db8::1]>"),
    ("trailing_dot_domain", "<victim@remote.example.>"),
    ("local_domain_as_subdomain", "<victim@example.com.remote.example>"),
    ("remote_with_local_suffix_case", "<victim@REMOTE.example>"),
    ("unbracketed", "victim@remote.example"),
    ("space_before_bracket", " <victim@remote.example>"),
    ("backslash_escape", '<"victim\\@remote.example"@example.com>'),
    ("encoded_at", "<victim=40remote.example@example.com>"),
    ("utf8_lookalike_domain", "<victim@exämple.com>"),
    ("postmaster_at_remote", "<postmaster@remote.example>"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("relaybattery")
    config = base_config(root / "var", processors=local_only_processors())
    config["smtpservers"][0]["authFailureDelay"] = 0
    config["smtpservers"][1]["authFailureDelay"] = 0
    srv = ServerProcess(root, config)
    for user in ("alice@example.com", "bob@example.com", "postmaster@example.com"):
        srv.add_user(user, PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def outsider(srv, listener="smtp") -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", srv.port(listener), timeout=10, source_address=OUTSIDE)
    s.command_encoding = "utf-8"
    s.ehlo("attacker.example")
    return s


def send_raw(s: smtplib.SMTP, sender: str, rcpt: str):
    s.rset()
    s.command_encoding = "utf-8"
    code, _ = s.docmd(f"MAIL FROM:{sender}" + ("" if rcpt.isascii() else " SMTPUTF8"))
    if code != 250:
        return code, None
    return code, s.docmd(f"RCPT TO:{rcpt}")


@pytest.mark.parametrize("name,rcpt", RELAY_TRICKS, ids=[n for n, _ in RELAY_TRICKS])
def test_relay_trick_from_outsider_is_not_relayed(server, name, rcpt):
    with outsider(server) as s:
        _, reply = send_raw(s, "<spammer@attacker.example>", rcpt)
        code = reply[0]
        if code in (250, 251):
            # accepted as a local address: the mail must be delivered or bounced here
            assert s.data(b"Subject: relay test " + name.encode() + b"\r\n\r\nx\r\n")[0] == 250
        else:
            assert code in REFUSED or code == 550, (code, reply[1])


@pytest.mark.parametrize("name,rcpt", RELAY_TRICKS, ids=[n for n, _ in RELAY_TRICKS])
def test_relay_trick_with_null_sender_from_outsider_is_not_relayed(server, name, rcpt):
    with outsider(server) as s:
        _, reply = send_raw(s, "<>", rcpt)
        if reply[0] in (250, 251):
            assert s.data(b"Subject: null sender " + name.encode() + b"\r\n\r\nx\r\n")[0] == 250


def test_outsider_cannot_use_a_local_sender_without_auth(server):
    with outsider(server) as s:
        code, _ = s.docmd("MAIL FROM:<alice@example.com>")
    assert code == 530


def test_authenticated_user_cannot_send_as_another_local_user(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10,
                      source_address=OUTSIDE) as s:
        s.ehlo("client.example")
        s.login("alice@example.com", PASSWORD)
        for forged in ("<bob@example.com>", "<BOB@example.com>", "<bob@EXAMPLE.COM>",
                       '<"bob"@example.com>', "<postmaster@example.com>"):
            s.rset()
            code, _ = s.docmd(f"MAIL FROM:{forged}")
            assert code == 553, forged


def test_authenticated_user_relays_only_after_auth_and_outsider_auth_failure_relays_nothing(
        server):
    with outsider(server) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice@example.com", "wrong password")
        _, reply = send_raw(s, "<spammer@attacker.example>", "<victim@remote.example>")
        assert reply[0] == 530


def test_client_inside_authorized_addresses_relays_and_one_hop_outside_does_not(server):
    # 127.0.0.1 is authorized; a proxy forwarding from 127.0.0.2 is not, whatever it
    # writes in EHLO or XCLIENT-like commands.
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.ehlo("inside.example")
        assert send_raw(s, "<carol@client.example>", "<friend@remote.example>")[1][0] == 250
    with outsider(server) as s:
        assert s.docmd("XCLIENT ADDR=127.0.0.1")[0] >= 500
        s.ehlo("127.0.0.1")
        assert send_raw(s, "<carol@client.example>", "<friend@remote.example>")[1][0] == 530


def test_submission_listener_refuses_everything_before_auth(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as s:
        s.ehlo("client.example")
        assert s.docmd("MAIL FROM:<>")[0] == 530
        assert s.docmd("MAIL FROM:<x@attacker.example>")[0] == 530


def relay_out_rows(srv) -> list[str]:
    out = srv.cli("repository", "list", "relay-out", check=False).stdout
    return [line for line in out.splitlines() if "@" in line]


def test_no_trick_reached_the_relay_processor_only_the_authenticated_relay_did(server):
    """Runs last in this module. The control: one mail relayed on purpose by an
    authenticated user is in the relay repository; nothing else is."""
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10,
                      source_address=OUTSIDE) as s:
        s.ehlo("client.example")
        s.login("alice@example.com", PASSWORD)
        s.sendmail("alice@example.com", ["friend@remote.example"],
                   b"Subject: on purpose\r\n\r\nx\r\n")
    deadline = time.monotonic() + 20
    while not relay_out_rows(server) and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(1.0)                    # the trick mails were accepted earlier
    rows = relay_out_rows(server)
    assert len(rows) == 1, rows
    assert "alice@example.com" in rows[0] and "friend@remote.example" in rows[0]
