"""The ``mailet-mta`` command as an operator meets it: clear one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

from tests.support.server import ROOT, _env


def run(*args, input=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "mailet_mta", *args], capture_output=True,
                          text=True, input=input, env=_env(), cwd=cwd, timeout=120)


def test_check_config_accepts_the_shipped_xml_config():
    out = run("check-config", str(ROOT / "conf" / "config.xml"))
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def test_check_config_accepts_the_shipped_yaml_config_once_its_certificates_exist(tmp_path):
    from tests.support.certs import make_cert

    text = (ROOT / "conf" / "mailet-mta.yaml").read_text()
    # On a host without the production certificates the check names the missing file.
    out = run("check-config", str(ROOT / "conf" / "mailet-mta.yaml"))
    assert out.returncode == 1 and "/etc/mailet-mta/tls/" in out.stderr
    assert "mailet-mta.yaml:" in out.stderr
    cert, key = make_cert(tmp_path)
    text = (text.replace("/etc/mailet-mta/tls/fullchain.pem", str(cert))
            .replace("/etc/mailet-mta/tls/privkey.pem", str(key)))
    ready = tmp_path / "mailet-mta.yaml"
    ready.write_text(text)
    out = run("check-config", str(ready))
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def test_check_config_reports_unknown_mailet_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "conf" / "mailet-mta.yaml").read_text()
    assert "class: LocalDelivery" in text
    bad.write_text(text.replace("class: LocalDelivery", "class: LocalDelivry", 1))
    line = next(i for i, text_line in enumerate(bad.read_text().splitlines(), 1)
                if "LocalDelivry" in text_line)
    out = run("check-config", str(bad))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "LocalDelivry" in lines[0]
    assert f"bad.yaml:{line}" in lines[0] or f"bad.yaml:{line - 1}" in lines[0]


def test_check_config_reports_missing_processor_reference(tmp_path):
    bad = tmp_path / "bad.xml"
    text = (ROOT / "conf" / "config.xml").read_text()
    bad.write_text(text.replace("<processor>local-delivery</processor>",
                                "<processor>local-delivry</processor>", 1))
    out = run("check-config", str(bad))
    assert out.returncode == 1 and "local-delivry" in out.stderr
    assert "bad.xml:" in out.stderr


def test_serve_with_a_broken_config_exits_1_with_one_line_and_listens_nowhere(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("servernames: [example.com]\nsmtpservers:\n  - listen: tcp:0\n"
                   "    authRequired: maybe\n")
    out = run("serve", "--config", str(bad), cwd=tmp_path)
    assert out.returncode == 1
    assert "bad.yaml:4" in out.stderr and "authRequired" in out.stderr
    assert not (tmp_path / "var" / "listeners.json").exists()


def test_missing_config_file_is_one_clear_line(tmp_path):
    out = run("check-config", str(tmp_path / "nope.yaml"))
    assert out.returncode == 1 and "not found" in out.stderr


def test_users_add_reads_the_password_from_stdin_never_argv(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"servernames: [example.com]\nstorage:\n  data_dir: {tmp_path / 'var'}\n")
    out = run("users", "add", "alice@example.com", "--password-stdin", "--config", str(cfg),
              input="pw-123456\n")
    assert out.returncode == 0, out.stderr
    listed = run("users", "list", "--config", str(cfg))
    assert "alice@example.com" in listed.stdout
    assert "pw-123456" not in listed.stdout
    bad = run("users", "add", "mallory@elsewhere.example", "--password-stdin", "--config",
              str(cfg), input="x\n")
    assert bad.returncode == 1 and "elsewhere.example" in bad.stderr
    argv = run("users", "add", "bob@example.com", "secret", "--config", str(cfg))
    assert argv.returncode != 0


def test_db_upgrade_reports_the_revision(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"servernames: [example.com]\nstorage:\n  data_dir: {tmp_path / 'var'}\n")
    out = run("db", "upgrade", "--config", str(cfg))
    assert out.returncode == 0 and "revision" in out.stdout
