"""SRS through three real mailet-mta instances and a DNS zone on 127.0.0.1: mail from
alice@a.test (whose SPF record allows only 192.0.2.1) reaches an alias on B that
forwards it to C. B rewrites the envelope sender into b.test with SRS, so C's SPF
check is made against b.test (which allows B) and passes. A bounce to that SRS
address is accepted by B and delivered back to alice on A; a forged SRS address is
refused at RCPT with 550 5.7.1."""

from __future__ import annotations

import email
import smtplib
import uuid

import pytest

from tests.support.dns_zone import ZoneServer
from tests.support.server import ServerProcess, base_config, pop3_messages, start_all, wait_for

PASSWORD = "auth-pass-123"
SECRET = "srs-test-secret-0123456789"


def from_outside(name: str, tmp_path, servernames) -> dict:
    """A server whose SMTP listener takes mail as from the Internet (no
    authorizedAddresses)."""
    return base_config(tmp_path / name / "var", servernames=servernames, smtp=[
        {"name": "smtp", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
         "authorizedAddresses": []}])


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A, B and C for the whole module: each test sends mail of its own through them
    and looks only for that mail (:func:`forward_through_b` marks it)."""
    tmp_path = tmp_path_factory.mktemp("srs")
    zone = ZoneServer({
        "a.test": [("TXT", "v=spf1 ip4:192.0.2.1 -all")],    # not the forwarder
        "b.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],    # the forwarder
    }).start()
    a = ServerProcess(tmp_path / "a", from_outside("a", tmp_path, ["a.test"]), name="a")
    a.add_user("alice@a.test", PASSWORD)

    c_cfg = from_outside("c", tmp_path, ["c.test"])
    c_cfg["dns"] = {"servers": [zone.address], "timeout": 2}
    c_cfg["spoolmanager"]["processors"]["root"]["mailets"].insert(
        0, {"match": "All", "class": "SPF"})
    c = ServerProcess(tmp_path / "c", c_cfg, name="c")
    c.add_user("carol@c.test", PASSWORD)
    servers = list(start_all(a, c))     # B needs both their ports

    secret = tmp_path / "srs.secret"
    secret.write_text(SECRET + "\n")
    b_cfg = from_outside("b", tmp_path, ["b.test"])
    b_cfg["dns"] = {"hosts": {"c.test": [f"127.0.0.1:{c.port('smtp')}"],
                              "a.test": [f"127.0.0.1:{a.port('smtp')}"]}}
    b_cfg["spoolmanager"]["processors"]["relay"]["mailets"].insert(0, {
        "match": "All", "class": "SRS", "parameters": {"secretFile": str(secret)}})
    b = ServerProcess(tmp_path / "b", b_cfg, name="b")
    b.admin("aliases", "add", "bob@b.test", "carol@c.test")
    servers.append(b.start())
    yield a, b, c
    for server in reversed(servers):
        server.stop()
    zone.stop()


def send(server, sender: str, rcpt: str, message: bytes) -> tuple[int, bytes]:
    """One transaction as a server from outside would make it; the RCPT reply if it
    was refused, else the DATA reply."""
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.ehlo("mx.a.test")
        s.mail(sender)
        code, text = s.rcpt(rcpt)
        if code >= 400:
            return code, text
        return s.data(message)


def with_marker(messages: list[bytes], marker: bytes) -> bytes | None:
    """The message holding ``marker`` (the servers are shared by the module's tests)."""
    return next((m for m in messages if marker in m), None)


def forward_through_b(a, b, c) -> tuple[str, str]:
    marker = f"via bob {uuid.uuid4().hex}"
    code, _ = send(b, "alice@a.test", "bob@b.test",
                   b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: "
                   + marker.encode() + b"\r\n\r\nhello\r\n")
    assert code == 250
    got = wait_for(lambda: with_marker(pop3_messages(c, "carol@c.test", PASSWORD),
                                       marker.encode()),
                   timeout=90, what="the forwarded mail on server C")
    msg = email.message_from_bytes(got)
    return msg["Return-Path"].strip("<>"), " ".join(msg["Authentication-Results"].split())


def test_forwarded_mail_has_an_srs_sender_of_b_and_passes_spf_at_c(chain):
    a, b, c = chain
    return_path, results = forward_through_b(a, b, c)
    local, _, domain = return_path.rpartition("@")
    assert domain == "b.test"
    tag, hash_, ts, orig_domain, orig_local = local.split("=")
    assert (tag, len(hash_), len(ts), orig_domain, orig_local) == \
        ("SRS0", 4, 2, "a.test", "alice")
    assert f"spf=pass smtp.mailfrom={return_path}" in results


def test_a_bounce_to_the_srs_address_reaches_the_original_sender(chain):
    a, b, c = chain
    return_path, _ = forward_through_b(a, b, c)
    marker = f"bounced {uuid.uuid4().hex}".encode()
    code, text = send(b, "", return_path,
                      b"From: MAILER-DAEMON@c.test\r\nTo: " + return_path.encode() +
                      b"\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n"
                      + marker + b"\r\n")
    assert code == 250, text
    got = wait_for(lambda: with_marker(pop3_messages(a, "alice@a.test", PASSWORD), marker),
                   timeout=90, what="the bounce at alice on server A")
    assert b"Undelivered Mail Returned to Sender" in got


def test_a_forged_srs_address_is_refused_at_rcpt(chain):
    a, b, c = chain
    return_path, _ = forward_through_b(a, b, c)
    local, _, _domain = return_path.rpartition("@")
    tag, hash_, ts, orig_domain, _orig_local = local.split("=")
    for forged in (f"{tag}={hash_}={ts}={orig_domain}=mallory@b.test",   # other target
                   f"{tag}={'AAAA' if hash_ != 'AAAA' else 'BBBB'}={ts}={orig_domain}"
                   f"=alice@b.test",                                      # wrong hash
                   f"{tag}={hash_[:1]}={ts}={orig_domain}=alice@b.test"):  # short hash
        code, text = send(b, "", forged, b"Subject: x\r\n\r\nx\r\n")
        assert code == 550, (forged, text)
        assert text.startswith(b"5.7.1") and b"invalid SRS address" in text
