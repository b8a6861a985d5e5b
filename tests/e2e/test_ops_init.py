"""``mailet-mta init`` as a new user runs it: init, check-config, users add, serve, send
a mail over SMTP with STARTTLS and read it back over POP3."""

from __future__ import annotations

import poplib
import re
import smtplib
import ssl
import subprocess
import sys

from tests.support.server import ROOT, ServerProcess, _env, wait_for

PASSWORD = "init-walkthrough-pw"


def mailet_mta(*args, input=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "mailet_mta", *args], input=input,
                          capture_output=True, text=True, env=_env(), cwd=cwd or ROOT,
                          timeout=120)


def on_ephemeral_ports(config_text: str) -> str:
    """The same configuration with every listener on port 0 (tests run in parallel)."""
    return re.sub(r"listen: tcp:\d+:", "listen: tcp:0:", config_text)


def test_init_config_passes_check_config_and_serve_runs_it(tmp_path):
    site = tmp_path / "mail"
    done = mailet_mta("init", str(site), "--domain", "example.com", "--xml")
    assert done.returncode == 0, done.stderr
    config = site / "mailet-mta.yaml"
    assert f"serve --config {config}" in done.stdout
    assert "swaks" in done.stdout and "curl" in done.stdout
    for path in (config, site / "config.xml"):
        checked = mailet_mta("check-config", str(path))
        assert checked.returncode == 0, checked.stderr
    assert (site / "var" / "mailet-mta.sqlite3").exists()

    config.write_text(on_ephemeral_ports(config.read_text()))
    srv = ServerProcess(tmp_path, config_path=config)
    srv.data_dir = site / "var"
    srv.add_user("alice@example.com", PASSWORD)
    with srv:
        assert set(srv.listeners) >= {"smtp", "submission", "submissions", "pop3", "pop3s",
                                      "imap", "imaps"}
        tls = ssl.create_default_context(cafile=str(site / "tls" / "cert.pem"))
        tls.check_hostname = False
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            s.starttls(context=tls)
            s.sendmail("carol@example.org", ["alice@example.com"],
                       b"Subject: first mail\r\n\r\nit works\r\n")

        def read():
            box = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=tls, timeout=10)
            try:
                box.user("alice@example.com")
                box.pass_(PASSWORD)
                return box.stat()[0] and b"\r\n".join(box.retr(1)[1])
            finally:
                box.quit()

        raw = wait_for(read, what="the mail over POP3S")
    assert b"Subject: first mail" in raw and b"it works" in raw


def test_init_refuses_to_overwrite_an_existing_configuration(tmp_path):
    assert mailet_mta("init", str(tmp_path / "m")).returncode == 0
    again = mailet_mta("init", str(tmp_path / "m"))
    assert again.returncode == 1
    assert "already exists; pass --force" in again.stderr
