"""The seed's five-step "configure SMTP AUTH" procedure, done literally on conf/config.xml.

1. list the local domains in <servernames>; 2. remove the RemoteAddrNotInNetwork
mailet; 3. authRequired true; 4. verifyIdentity true; 5. restart (add users). Then an
unauthenticated client cannot relay, an authenticated one can, and one that
authenticates as alice but sends as bob is refused.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import ROOT, ServerProcess, _env, wait_for

PASSWORD = "s3cret-pass"


def shipped_xml(data_dir: Path) -> str:
    text = (ROOT / "conf" / "config.xml").read_text()
    # Test plumbing only: loopback ephemeral ports and a private data directory.
    text = re.sub(r"<listen>tcp:\d+</listen>", "<listen>tcp:0:interface=127.0.0.1</listen>", text)
    text = text.replace("<dataDir>./var</dataDir>", f"<dataDir>{data_dir}</dataDir>")
    return text


def five_steps(text: str) -> str:
    # 1. list the local domains
    text = text.replace("<servername>localhost</servername>",
                        "<servername>localhost</servername>\n"
                        "      <servername>example.com</servername>", 1)
    # 2. remove the mailet that sends remote recipients from outside to relay-denied
    text, n = re.subn(r'\s*<mailet match="remote-rcpt-from-outside" class="ToProcessor">'
                      r'.*?</mailet>', "", text, count=1, flags=re.S)
    assert n == 1
    # 3. and 4. authRequired and verifyIdentity
    text, n1 = re.subn(r"<authRequired>false</authRequired>",
                       "<authRequired>true</authRequired>", text)
    text, n2 = re.subn(r"<verifyIdentity>false</verifyIdentity>",
                       "<verifyIdentity>true</verifyIdentity>", text)
    assert n1 >= 1 and n2 >= 1
    return text


@pytest.fixture(scope="module")
def seed_server(tmp_path_factory):
    """One server for the tests after the five steps: they only connect and send, and
    none sends what another looks for (nothing but the relayed mail reaches a processor)."""
    tmp_path = tmp_path_factory.mktemp("seed")
    path = tmp_path / "config.xml"
    path.write_text(five_steps(shipped_xml(tmp_path / "var")))
    # At debug the log names each processor a mail runs through (checked below).
    srv = ServerProcess(tmp_path, config_path=path, name="seed", command=[
        sys.executable, "-m", "mailet_mta", "serve", "--config", str(path),
        "--log-level", "debug"])
    srv.data_dir = tmp_path / "var"
    checked = subprocess.run([sys.executable, "-m", "mailet_mta", "check-config", str(path)],
                             capture_output=True, text=True, env=_env(), timeout=120)
    assert checked.returncode == 0 and "OK" in checked.stdout, checked.stderr
    srv.add_user("alice@example.com", PASSWORD)
    srv.add_user("bob@example.com", PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def smtp_port(srv) -> int:
    return next(v["port"] for v in srv.listeners.values() if v["protocol"] == "smtp")


def test_shipped_config_before_the_steps_refuses_relay_from_outside(tmp_path):
    path = tmp_path / "config.xml"
    path.write_text(shipped_xml(tmp_path / "var"))
    srv = ServerProcess(tmp_path, config_path=path, name="before")
    srv.data_dir = tmp_path / "var"
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", smtp_port(srv), timeout=10,
                          source_address=("127.0.0.2", 0)) as s:
            s.ehlo("outside.example.org")
            assert not s.has_extn("auth")            # authRequired false: not offered
            s.mail("someone@outside.example.org")
            code, text = s.rcpt("victim@remote.example")
        assert code == 550 and b"5.7.1" in text
    finally:
        srv.stop()


def test_after_the_five_steps_unauthenticated_client_cannot_relay(seed_server):
    with smtplib.SMTP("127.0.0.1", smtp_port(seed_server), timeout=10,
                      source_address=("127.0.0.2", 0)) as s:
        s.ehlo("outside.example.org")
        assert s.has_extn("auth")
        s.mail("someone@outside.example.org")
        code, text = s.rcpt("victim@remote.example")
    assert code == 530 and b"5.7.1" in text


def test_after_the_five_steps_authenticated_client_can_relay(seed_server):
    with smtplib.SMTP("127.0.0.1", smtp_port(seed_server), timeout=10,
                      source_address=("127.0.0.2", 0)) as s:
        s.ehlo("laptop.example.com")
        s.login("alice@example.com", PASSWORD)
        refused = s.sendmail("alice@example.com", ["friend@remote.example"],
                             b"From: alice@example.com\r\nSubject: relayed\r\n\r\nhi\r\n")
    assert refused == {}
    # The mail reached the relay processor (and so RemoteDelivery), not relay-denied.
    relayed = wait_for(lambda: [line for line in seed_server.log_text().splitlines()
                                if "processor=relay " in line
                                and "friend@remote.example" in line],
                       what="the mail in the relay processor")
    assert relayed
    assert "processor=relay-denied" not in seed_server.settled_log()


def test_after_the_five_steps_alice_cannot_send_as_bob(seed_server):
    with smtplib.SMTP("127.0.0.1", smtp_port(seed_server), timeout=10,
                      source_address=("127.0.0.2", 0)) as s:
        s.ehlo("laptop.example.com")
        s.login("alice@example.com", PASSWORD)
        code, text = s.mail("bob@example.com")
    assert code == 553 and b"5.7.1" in text
