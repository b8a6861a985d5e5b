"""Real third-party clients against the SMTP service: swaks and curl."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.integration.smtp_live import LiveServer

SWAKS = shutil.which("swaks")
CURL = shutil.which("curl")
needs_swaks = pytest.mark.skipif(SWAKS is None, reason="swaks is not installed "
                                 "(apt-get install -y swaks)")


@pytest.fixture
def server(tmp_path):
    srv = LiveServer(tmp_path, tls=True).start_blocking()
    yield srv
    pytest_twisted.blockon(srv.stop())


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, **kw)


@needs_swaks
@pytest_twisted.ensureDeferred
async def test_swaks_pipelined_plain_delivery(server):
    proc = await threads.deferToThread(run, [
        SWAKS, "--server", f"127.0.0.1:{server.port}", "--from", "x@remote.net",
        "--to", "alice@example.com,bob@example.com", "--pipeline",
        "--header", "Subject: swaks test", "--body", "hello from swaks"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mail, _ = server.backend.accepted[0]
    assert [str(r) for r in mail.recipients] == ["alice@example.com", "bob@example.com"]
    assert b"hello from swaks" in mail.message_bytes()


@needs_swaks
@pytest_twisted.ensureDeferred
async def test_swaks_starttls_auth_login_relay(server):
    proc = await threads.deferToThread(run, [
        SWAKS, "--server", f"127.0.0.1:{server.port}", "--tls", "--auth", "LOGIN",
        "--auth-user", "alice", "--auth-password", "secret", "--from", "alice@example.com",
        "--to", "friend@far.net", "--body", "relayed"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mail, _ = server.backend.accepted[0]
    assert mail.auth_user == "alice" and mail.attributes["mailet_mta.smtp.tls"] is True


@needs_swaks
@pytest_twisted.ensureDeferred
async def test_swaks_relay_without_auth_is_refused(server):
    proc = await threads.deferToThread(run, [
        SWAKS, "--server", f"127.0.0.1:{server.port}", "--from", "x@remote.net",
        "--to", "friend@far.net"])
    assert proc.returncode != 0 and "530 5.7.1" in proc.stdout
    assert server.backend.accepted == []


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest_twisted.ensureDeferred
async def test_curl_smtp_upload(server, tmp_path):
    msg = tmp_path / "msg.eml"
    msg.write_bytes(b"From: x@remote.net\r\nSubject: curl\r\n\r\nsent by curl\r\n")
    proc = await threads.deferToThread(run, [
        CURL, "-sS", f"smtp://127.0.0.1:{server.port}", "--mail-from", "x@remote.net",
        "--mail-rcpt", "bob@example.com", "-T", str(msg)])
    assert proc.returncode == 0, proc.stderr
    assert server.backend.message_bytes().endswith(b"Subject: curl\r\n\r\nsent by curl\r\n")
