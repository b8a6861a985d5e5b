"""The blob store's disk fills up: the client is told, nothing is left behind.

The blob directory sits on a 2 MB tmpfs mounted for the test, so a 3 MB message
really fails with ENOSPC while DATA arrives (and a 1 MB tmpfs under the data directory
fills the database itself). The server must answer ``452 4.3.1``,
remove the partial file, release the session's connection slot and still stop
promptly on SIGTERM. Left-over temporary files and orphan blob files (a crash between
the rename of a body file and the commit of its row) are removed at start-up.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import time

import pytest

from tests.support.server import ServerProcess, base_config

BIG = (b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 3000)   # ~3 MB


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs for the blob directory (unmounted afterwards)."""
    mount_point = tmp_path / "blobs"
    mount_point.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command: cannot make a small file system for the blobs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def server_with_blobs_on(tmp_path, blob_dir) -> ServerProcess:
    config = base_config(tmp_path / "var")
    config["storage"]["blob_dir"] = str(blob_dir)
    config["smtpservers"][0]["connectionLimit"] = 1
    return ServerProcess(tmp_path, config)


def test_disk_full_during_data_is_452_with_nothing_left_and_the_slot_released(
        tmp_path, small_disk):
    server = server_with_blobs_on(tmp_path, small_disk)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
            client.ehlo("client.test")
            client.mail("sender@example.com")
            client.rcpt("postmaster@example.com")
            code, text = client.data(BIG)
            assert (code, text[:5]) == (452, b"4.3.1"), (code, text)
            assert client.noop()[0] == 250          # the session goes on
        assert list((small_disk / "tmp").iterdir()) == []
        assert sum(f.stat().st_size for f in small_disk.rglob("*") if f.is_file()) == 0
        # The slot (connectionLimit 1) is free again: the next client is served. The
        # server frees it when it sees the first connection closed, a moment after the
        # client's QUIT: a leaked slot would refuse every try.
        with _served_within(server.port("smtp"), seconds=10) as client:
            client.ehlo("client.test")
            assert client.sendmail("sender@example.com", ["postmaster@example.com"],
                                   b"Subject: small\r\n\r\nfits\r\n") == {}
    finally:
        started = time.monotonic()
        code = server.stop(timeout=15)
    assert code == 0, server.log_text()[-3000:]
    assert time.monotonic() - started < 10


def _served_within(port: int, seconds: float) -> smtplib.SMTP:
    """A client the server greets with 220, trying again while it answers 421."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return smtplib.SMTP("127.0.0.1", port, timeout=30)
        except smtplib.SMTPConnectError as exc:
            if exc.smtp_code != 421 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_leftover_temporary_and_orphan_blob_files_are_removed_at_start(tmp_path):
    blob_dir = tmp_path / "blobs"
    server = server_with_blobs_on(tmp_path, blob_dir)
    server.start()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail("sender@example.com", ["postmaster@example.com"],
                        b"Subject: kept\r\n\r\n" + b"y" * 200_000 + b"\r\n")
    server.stop()
    kept = [f for f in blob_dir.rglob("*") if f.is_file() and f.parent.name != "tmp"]
    assert len(kept) == 1                      # the accepted mail's body: a real blob
    partial = blob_dir / "tmp" / "20260101000000-partial"
    partial.write_bytes(b"half a message")
    orphan = blob_dir / "zz" / "20260101000000-orphanzz"
    orphan.parent.mkdir()
    orphan.write_bytes(b"renamed, but its row was never committed")
    server.start()
    try:
        assert not partial.exists() and not orphan.exists()
        assert kept[0].exists()
        server.wait_log("removed 2 left-over blob files")
    finally:
        server.stop()


def test_database_disk_full_is_also_452_and_the_session_goes_on(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs",
                           str(data_dir)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    server = ServerProcess(tmp_path, base_config(data_dir))
    try:
        server.start()
        body = b"Subject: inline\r\n\r\n" + (b"y" * 998 + b"\r\n") * 50   # kept inline
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
            client.ehlo("client.test")
            for _ in range(60):
                client.mail("sender@example.com")
                client.rcpt("postmaster@example.com")
                code, text = client.data(body)
                if code != 250:
                    break
            assert (code, text[:5]) == (452, b"4.3.1"), (code, text)
            assert client.noop()[0] == 250
        started = time.monotonic()
        assert server.stop(timeout=15) == 0, server.log_text()[-3000:]
        assert time.monotonic() - started < 15
    finally:
        server.kill()
        subprocess.run(["umount", "-l", str(data_dir)], capture_output=True)
