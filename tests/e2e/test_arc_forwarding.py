"""Three real mailet-mta instances and a DNS zone on 127.0.0.1: A signs with DKIM and
sends to an alias on B; B checks the mail, adds a footer (as a list would) and
forwards it to C with an ARC seal. At C the footer has broken A's DKIM signature and
SPF does not allow the forwarder, so DMARC fails under A's p=reject — and the ARC
chain passes with B's seal, which C trusts (``arcTrustedSealers``), so the mail is
delivered with the override in its Authentication-Results."""

from __future__ import annotations

import email
import smtplib

import pytest

from mailets.dkim_keys import generate_key
from tests.e2e.test_refused_mail_records import stored_names
from tests.support.dns_zone import ZoneServer
from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

PASSWORD = "auth-pass-123"


def checks(trusted: str | None = None) -> list[dict]:
    """The checks on mail from outside (a listener without authorizedAddresses)."""
    dmarc = {"match": "All", "class": "DMARC"}
    if trusted:
        dmarc["parameters"] = {"arcTrustedSealers": trusted}
    return [
        {"match": "from-outside", "class": "DKIMVerify"},
        {"match": "from-outside", "class": "SPF"},
        {"match": "from-outside", "class": "ARCVerify"},
        {**dmarc, "match": "from-outside"},
        {"match": "DMARCDisposition=reject", "class": "ToRepository",
         "parameters": {"repositoryPath": "dmarc-reject"}},
    ]


def outside_only(name: str, tmp_path, servernames, dns) -> dict:
    cfg = base_config(tmp_path / name / "var", servernames=servernames, smtp=[
        {"name": "smtp", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
         "authorizedAddresses": []},
        {"name": "submission", "listen": "tcp:0:interface=127.0.0.1",
         "authRequired": True, "authorizedAddresses": []}])
    cfg["dns"] = dns
    root = cfg["spoolmanager"]["processors"]["root"]
    root["matchers"] = {"from-outside": {
        "match": "Not", "matchers": ["SMTPAuthSuccessful", "SMTPIsAuthNetwork",
                                     "SentByMailet"]}}
    return cfg


@pytest.fixture
def chain(tmp_path):
    a_key, b_key = generate_key("ed25519"), generate_key("rsa")
    (tmp_path / "a.key").write_bytes(a_key.private)
    (tmp_path / "b.key").write_bytes(b_key.private)
    zone = ZoneServer({
        # SPF allows only an address that is not the forwarder's (nor A's: DKIM carries
        # DMARC from A to B)
        "a.test": [("TXT", "v=spf1 ip4:192.0.2.1 -all")],
        "mail._domainkey.a.test": [("TXT", a_key.public_record())],
        "_dmarc.a.test": [("TXT", "v=DMARC1; p=reject")],
        "arc._domainkey.b.test": [("TXT", b_key.public_record())],
    }).start()
    servers = []

    c_cfg = outside_only("c", tmp_path, ["c.test"],
                         {"servers": [zone.address], "timeout": 2})
    c_cfg["spoolmanager"]["processors"]["root"]["mailets"][1:1] = checks(trusted="b.test")
    c = ServerProcess(tmp_path / "c", c_cfg, name="c")
    c.add_user("carol@c.test", PASSWORD)
    servers.append(c.start())

    b_cfg = outside_only("b", tmp_path, ["b.test"],
                         {"servers": [zone.address], "timeout": 2,
                          "hosts": {"c.test": [f"127.0.0.1:{c.port('smtp')}"]}})
    b_cfg["spoolmanager"]["processors"]["root"]["mailets"][1:1] = checks() + [
        {"match": "from-outside", "class": "AddFooter",
         "parameters": {"text": "-- sent through list@b.test"}}]
    b_cfg["spoolmanager"]["processors"]["relay"]["mailets"].insert(0, {
        "match": "All", "class": "ARCSeal",
        "parameters": {"key": f"b.test:arc:{tmp_path / 'b.key'}"}})
    b = ServerProcess(tmp_path / "b", b_cfg, name="b")
    b.admin("aliases", "add", "list@b.test", "carol@c.test")
    servers.append(b.start())

    a_cfg = base_config(tmp_path / "a" / "var", servernames=["a.test"])
    a_cfg["dns"] = {"hosts": {"b.test": [f"127.0.0.1:{b.port('smtp')}"]}}
    a_cfg["spoolmanager"]["processors"]["relay"]["mailets"].insert(0, {
        "match": "All", "class": "DKIMSign",
        "parameters": {"keys": f"a.test:mail:{tmp_path / 'a.key'}"}})
    a = ServerProcess(tmp_path / "a", a_cfg, name="a")
    a.add_user("alice@a.test", PASSWORD)
    servers.append(a.start())
    yield a, b, c
    for server in reversed(servers):
        server.stop()
    zone.stop()


def test_mail_forwarded_by_an_alias_keeps_passing_through_arc(chain):
    a, _b, c = chain
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=10) as s:
        s.login("alice@a.test", PASSWORD)
        s.sendmail("alice@a.test", ["list@b.test"],
                   b"From: Alice <alice@a.test>\r\nTo: list@b.test\r\nSubject: to the list"
                   b"\r\n\r\nhello list\r\n")
    got = wait_for(lambda: pop3_messages(c, "carol@c.test", PASSWORD), timeout=90,
                   what="the forwarded mail on server C")
    msg = email.message_from_bytes(got[0])
    assert b"sent through list@b.test" in got[0]
    assert msg["ARC-Seal"].split(";")[0:2] == ["i=1", " cv=none"]
    results = {authserv: " ".join(v.split()) for v in msg.get_all("Authentication-Results")
               for authserv in [v.split(";")[0].strip()]}
    at_b, at_c = results["b.test"], results["c.test"]
    assert "dkim=pass header.d=a.test" in at_b and "dmarc=pass" in at_b
    assert "arc=none" in at_b
    assert "dkim=fail header.d=a.test" in at_c
    assert "spf=fail" in at_c
    assert "arc=pass header.as-d=b.test header.as-s=arc" in at_c
    assert "dmarc=fail (p=reject dis=none override=arc) header.from=a.test" in at_c
    assert stored_names(c, "dmarc-reject") == []
