"""Files and secrets: what init and serve create is private whatever the umask.

The database holds password hashes and message bodies, blob files hold messages, the
configuration may hold a gateway password and the log names users and clients. Under
umask 022 (the usual default) they used to be world-readable; now directories are
0700 and files 0600.
"""

from __future__ import annotations

import os
import smtplib
import stat
import subprocess
import sys

import pytest

from tests.support.server import ServerProcess, _env, base_config


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_init_under_umask_022_creates_private_directories_config_key_and_database(
        tmp_path):
    target = tmp_path / "etc" / "mailet-mta"
    result = subprocess.run([sys.executable, "-m", "mailet_mta", "init", str(target),
                             "--domain", "example.com", "--xml"], capture_output=True,
                            text=True, env=_env(), timeout=120, umask=0o022)
    assert result.returncode == 0, result.stderr
    for directory in (tmp_path / "etc", target, target / "var", target / "tls"):
        assert mode(directory) == 0o700, directory
    for private in ("mailet-mta.yaml", "config.xml", "tls/key.pem",
                    "var/mailet-mta.sqlite3"):
        assert mode(target / private) == 0o600, private


def test_serve_under_umask_022_keeps_database_blobs_and_log_private(tmp_path, umask_022):
    data_dir = tmp_path / "var"
    config = base_config(data_dir, logging={"level": "info",
                                            "file": str(tmp_path / "mailet-mta.log")})
    config["storage"]["inline_blob_limit"] = 1024       # the body becomes a blob file
    server = ServerProcess(tmp_path, config)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
            client.sendmail("sender@example.com", ["postmaster@example.com"],
                            b"Subject: private\r\n\r\n" + b"z" * 5000 + b"\r\n")
        database = data_dir / "mailet-mta.sqlite3"
        files = [database, tmp_path / "mailet-mta.log"]
        files += [data_dir / "mailet-mta.sqlite3-wal", data_dir / "mailet-mta.sqlite3-shm"]
        bodies = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
        assert bodies, "the 5 kB body should be a blob file"
        for path in files + bodies:
            assert mode(path) == 0o600, path
        directories = [data_dir] + [p for p in (data_dir / "blobs").rglob("*") if p.is_dir()]
        for path in directories + [data_dir / "blobs"]:
            assert mode(path) == 0o700, path
    finally:
        server.stop()
