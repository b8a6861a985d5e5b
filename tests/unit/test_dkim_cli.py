"""``mailet-mta dkim keygen`` and ``dkim check`` as a user runs them, with the key
record served by a DNS zone on 127.0.0.1."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
import yaml

from mailets.dkim_keys import read_key
from tests.support.dns_zone import ZoneServer


@pytest.fixture
def zone():
    server = ZoneServer().start()
    yield server
    server.stop()


def run_cli(tmp_path, *argv, dns_server=None, capsys=None):
    """The command as a user runs it; with ``capsys``, by its own main in this process
    (for the commands that run no reactor: keygen)."""
    config = {"servernames": ["a.test"], "storage": {"data_dir": str(tmp_path / "var")},
              "dns": {"servers": [dns_server or "127.0.0.1:9"], "timeout": 1}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    if capsys is not None:
        from mailet_mta.cli import main

        argv = (*argv, "--config", str(path))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)
    return subprocess.run([sys.executable, "-m", "mailet_mta", *argv, "--config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_dkim_keygen_writes_a_private_key_and_prints_its_record(tmp_path, capsys,
                                                               algorithm):
    out = run_cli(tmp_path, "dkim", "keygen", "a.test", "--selector", "s1",
                  "--algorithm", algorithm, capsys=capsys)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "var" / "dkim" / "a.test.s1.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_key(str(path))
    assert key.algorithm == algorithm
    assert f's1._domainkey.a.test. IN TXT ( "v=DKIM1; k={algorithm}; p=' in out.stdout
    # every string of the printed record fits a TXT character-string
    record = out.stdout.split("IN TXT ( ")[1].split(" )")[0]
    assert all(len(s) <= 255 for s in record.strip('"').split('" "'))


def test_dkim_keygen_does_not_replace_a_key_without_force(tmp_path, capsys):
    assert run_cli(tmp_path, "dkim", "keygen", "a.test", capsys=capsys).returncode == 0
    again = run_cli(tmp_path, "dkim", "keygen", "a.test", capsys=capsys)
    assert again.returncode == 1 and "--force" in again.stderr


@pytest.mark.slow      # three runs of the command as a process of its own (it runs a reactor)
def test_dkim_check_compares_the_published_record_with_the_key(tmp_path, zone, capsys):
    assert run_cli(tmp_path, "dkim", "keygen", "a.test", "--algorithm", "rsa",
                   capsys=capsys).returncode == 0
    missing = run_cli(tmp_path, "dkim", "check", "a.test", dns_server=zone.address)
    assert missing.returncode == 1 and "no DKIM key record at mail._domainkey.a.test" \
        in missing.stderr
    key = read_key(str(tmp_path / "var" / "dkim" / "a.test.mail.key"))
    zone.add("mail._domainkey.a.test", "TXT", key.public_record())
    ok = run_cli(tmp_path, "dkim", "check", "a.test", dns_server=zone.address)
    assert ok.returncode == 0, ok.stderr
    assert "matches" in ok.stdout
    zone.records["mail._domainkey.a.test"] = [("TXT", "v=DKIM1; k=rsa; p=AAAA")]
    wrong = run_cli(tmp_path, "dkim", "check", "a.test", dns_server=zone.address)
    assert wrong.returncode == 1 and "does not match" in wrong.stderr
