"""Two real mailet-mta instances and a DNS zone on 127.0.0.1: A signs with DKIM and
relays to B; B checks DKIM, SPF and DMARC against the zone. A forged ``From:`` of A's
domain sent to B from outside is refused with 550 5.7.1 at end of DATA on a listener
with dmarcReject, and kept in a repository by the pipeline on one without, when A
publishes p=reject."""

from __future__ import annotations

import email
import imaplib
import signal
import smtplib

import pytest
import yaml

from mailets.dkim_keys import generate_key
from tests.e2e.test_refused_mail_records import stored_names
from tests.support.dns_zone import ZoneServer
from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

PASSWORD = "auth-pass-123"
VERIFY = [
    {"match": "All", "class": "DKIMVerify"},
    {"match": "All", "class": "SPF"},
    {"match": "All", "class": "DMARC"},
    {"match": "DMARCDisposition=reject", "class": "ToRepository",
     "parameters": {"repositoryPath": "dmarc-reject"}},
    # As the shipped configuration's commented line: quarantine into Junk.
    {"match": "DMARCDisposition=quarantine", "class": "SetMailAttribute",
     "parameters": {"mailet_mta.folder": "Junk"}},
]


# Each test that uses the module's pair has a mailbox of its own at B, so what one
# test delivers is never in another's; the reload test changes B, so it has its own.
RECIPIENTS = ["bob@b.test", "bob.signed@b.test", "bob.refused@b.test",
              "bob.outside@b.test", "bob.quarantine@b.test"]


def start_pair(tmp_path):
    """A and B and the zone; stop them with :func:`stop_pair`."""
    key = generate_key("ed25519")
    key_path = tmp_path / "a.test.mail.key"
    key_path.write_bytes(key.private)
    zone = ZoneServer({
        "a.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        "mail._domainkey.a.test": [("TXT", key.public_record())],
        "_dmarc.a.test": [("TXT", "v=DMARC1; p=reject")],
        "q.test": [("TXT", "v=spf1 -all")],
        "_dmarc.q.test": [("TXT", "v=DMARC1; p=quarantine")],
    }).start()
    b_cfg = base_config(tmp_path / "b" / "var", servernames=["b.test"], smtp=[
        {"name": "smtp", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
         "authorizedAddresses": []},
        {"name": "mx", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
         "authorizedAddresses": [], "dmarcReject": True}])
    b_cfg["dns"] = {"servers": [zone.address], "timeout": 2}
    root = b_cfg["spoolmanager"]["processors"]["root"]["mailets"]
    root[0:0] = VERIFY
    b = ServerProcess(tmp_path / "b", b_cfg, name="b")
    for user in RECIPIENTS:
        b.add_user(user, PASSWORD)
    b.start()
    a_cfg = base_config(tmp_path / "a" / "var", servernames=["a.test"])
    # A delivers to B's listener that checks DMARC before 250: its mail must pass it.
    a_cfg["dns"] = {"hosts": {"b.test": [f"127.0.0.1:{b.port('mx')}"]}}
    relay = a_cfg["spoolmanager"]["processors"]["relay"]["mailets"]
    relay.insert(0, {"match": "All", "class": "DKIMSign",
                     "parameters": {"keys": f"a.test:mail:{key_path}"}})
    a = ServerProcess(tmp_path / "a", a_cfg, name="a")
    a.add_user("alice@a.test", PASSWORD)
    a.start()
    return a, b, zone


def stop_pair(a, b, zone) -> None:
    a.stop()
    b.stop()
    zone.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    a, b, zone = start_pair(tmp_path_factory.mktemp("pair"))
    yield a, b
    stop_pair(a, b, zone)


@pytest.fixture
def own_pair(tmp_path):
    a, b, zone = start_pair(tmp_path)
    yield a, b
    stop_pair(a, b, zone)


def test_signed_mail_from_a_passes_dkim_spf_and_dmarc_at_b(pair):
    a, b = pair
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=10) as s:
        s.login("alice@a.test", PASSWORD)
        s.sendmail("alice@a.test", ["bob.signed@b.test"],
                   b"From: Alice <alice@a.test>\r\nTo: bob.signed@b.test\r\n"
                   b"Subject: signed\r\n\r\nhello bob\r\n")
    got = wait_for(lambda: pop3_messages(b, "bob.signed@b.test", PASSWORD), timeout=60,
                   what="mail on server B")
    msg = email.message_from_bytes(got[0])
    assert msg["DKIM-Signature"] is not None
    [results] = msg.get_all("Authentication-Results")
    results = " ".join(results.split())
    assert "dkim=pass header.d=a.test header.a=ed25519-sha256 header.s=mail" in results
    assert "spf=pass smtp.mailfrom=alice@a.test" in results
    assert "dmarc=pass (p=reject dis=none) header.from=a.test" in results


FORGED = (b"From: CEO <ceo@a.test>\r\nTo: bob@b.test\r\nSubject: pay now\r\n"
          b"\r\nwire the money\r\n")


def test_forged_from_of_a_is_refused_at_end_of_data_with_550_5_7_1(pair):
    _a, b = pair
    kept = stored_names(b, "dmarc-reject")
    code, text = _send_forgery(b, "mx", "bob.refused@b.test")
    assert code == 550, text
    assert text.startswith(b"5.7.1") and b"DMARC" in text and b"a.test" in text
    assert pop3_messages(b, "bob.refused@b.test", PASSWORD) == []
    assert stored_names(b, "dmarc-reject") == kept    # refused, so nothing was kept


def test_forged_from_of_a_sent_to_b_from_outside_is_not_delivered(pair):
    _a, b = pair
    kept = len(stored_names(b, "dmarc-reject"))
    with smtplib.SMTP("127.0.0.1", b.port("smtp"), timeout=10) as s:
        s.sendmail("ceo@evil.test", ["bob.outside@b.test"], FORGED)
    wait_for(lambda: len(stored_names(b, "dmarc-reject")) > kept, timeout=30,
             what="the forged mail in the dmarc-reject repository")
    assert pop3_messages(b, "bob.outside@b.test", PASSWORD) == []


def _send_forgery(server, listener: str, rcpt: str = "bob@b.test") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.port(listener), timeout=10) as s:
        s.ehlo("client.test")
        s.mail("ceo@evil.test")
        assert s.rcpt(rcpt)[0] == 250
        return s.data(FORGED)


def test_reload_turns_dmarc_reject_on_and_a_forgery_is_then_refused(own_pair):
    _a, b = own_pair
    code, _text = _send_forgery(b, "smtp")     # no dmarcReject yet: accepted, then kept
    assert code == 250
    wait_for(lambda: stored_names(b, "dmarc-reject"), timeout=30,
             what="the first forgery in the dmarc-reject repository")
    config = yaml.safe_load(b.config_path.read_text())
    [smtp] = [c for c in config["smtpservers"] if c["name"] == "smtp"]
    smtp["dmarcReject"] = True
    b.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    b.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration from" in b.log_text(), what="the reload")
    code, text = _send_forgery(b, "smtp")
    assert code == 550, text
    assert text.startswith(b"5.7.1") and b"p=reject" in text and b"a.test" in text
    assert len(stored_names(b, "dmarc-reject")) == 1    # only the first one was kept


def _folder_subjects(server, user: str, folder: str) -> list[str]:
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    try:
        imap.login(user, PASSWORD)
        typ, _ = imap.select(folder, readonly=True)
        assert typ == "OK", folder
        _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [email.message_from_bytes(part[1])["Subject"] for part in data
                if isinstance(part, tuple)]
    except imaplib.IMAP4.error:
        return []
    finally:
        imap.logout()


def test_a_forgery_under_p_quarantine_is_filed_into_the_junk_folder(pair):
    """DMARCDisposition=quarantine sets the folder attribute, and the default
    pipeline's LocalDelivery (folderAttribute: mailet_mta.folder) files it in Junk."""
    _a, b = pair
    forged = (b"From: Bank <service@q.test>\r\nTo: bob@b.test\r\n"
              b"Subject: verify your account\r\n\r\nclick here\r\n")
    with smtplib.SMTP("127.0.0.1", b.port("smtp"), timeout=10) as s:
        s.sendmail("service@q.test", ["bob.quarantine@b.test"], forged)
    junk = wait_for(lambda: _folder_subjects(b, "bob.quarantine@b.test", "Junk"),
                    timeout=30, what="the quarantined mail in Junk")
    assert junk == ["verify your account"]
    assert pop3_messages(b, "bob.quarantine@b.test", PASSWORD) == []     # not in INBOX
