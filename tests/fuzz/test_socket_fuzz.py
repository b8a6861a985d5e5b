"""Random bytes and command sequences over real sockets into a running ``mailet-mta``.

After each example the server must still greet a new client and answer NOOP, its
resident memory must stay bounded, and it must not have exited. One server process
serves the whole module (started through the real CLI).
"""

from __future__ import annotations

import os
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.replies import FUZZ_SETTINGS, smtp_replies
from tests.soak.harness import PASSWORD, local_only_processors
from tests.support.server import ServerProcess, base_config

# a real server process: slow (the in-process state-machine fuzzers stay in the fast set)
pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("MAILET_MTA_FUZZ_SOCKET_EXAMPLES", "25"))
SMTP_WORDS = [b"EHLO x\r\n", b"HELO x\r\n", b"MAIL FROM:<a@remote.example>\r\n",
              b"RCPT TO:<alice@example.com>\r\n", b"RCPT TO:<x@elsewhere.example>\r\n",
              b"DATA\r\n", b"hello\r\n.\r\n", b"BDAT 5\r\n", b"BDAT 3 LAST\r\n", b"RSET\r\n",
              b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n", b"*\r\n", b"STARTTLS\r\n", b"\r\n",
              b"NOOP\r\n", b"VRFY alice\r\n", b"\x00\xff\xfe", b"A" * 3000, b"\n", b"\r"]
POP3_WORDS = [b"USER alice@example.com\r\n", f"PASS {PASSWORD}\r\n".encode(),
              b"PASS wrong\r\n", b"STAT\r\n", b"LIST\r\n", b"RETR 1\r\n", b"TOP 1 0\r\n",
              b"DELE 1\r\n", b"RSET\r\n", b"UIDL\r\n", b"AUTH PLAIN\r\n", b"*\r\n",
              b"CAPA\r\n", b"STLS\r\n", b"\xff\x00\r\n", b"B" * 9000, b"\r\n"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("socketfuzz")
    config = base_config(root / "var", processors=local_only_processors())
    config["smtpservers"][0]["connectionTimeout"] = 5
    config["smtpservers"][0]["authFailureDelay"] = 0
    config["pop3servers"][0]["authFailureDelay"] = 0
    srv = ServerProcess(root, config)
    srv.add_user("alice@example.com", PASSWORD)
    srv.start()
    srv.rss_start = rss_kib(srv.proc.pid)
    yield srv
    srv.stop()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def exchange(port: int, chunks: list[bytes], timeout: float = 5.0) -> bytes:
    """Send ``chunks`` (a short pause between them), then read until quiet or closed."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(0.15)
        for chunk in chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            except OSError:
                break
            if not data:
                break
            out += data
    return out


def still_serving(srv) -> None:
    assert srv.proc.poll() is None, "the server exited:\n" + srv.log_text()[-2000:]
    out = exchange(srv.port("smtp"), [b"NOOP\r\nQUIT\r\n"])
    assert [c for c, _ in smtp_replies(out)] == [220, 250, 221]
    pop = exchange(srv.port("pop3"), [b"NOOP\r\nQUIT\r\n"])
    assert pop.startswith(b"+OK") and b"+OK" in pop.split(b"\r\n", 2)[2]
    assert rss_kib(srv.proc.pid) - srv.rss_start < 64 * 1024, "resident memory grew by 64 MB"


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(st.lists(st.one_of(st.sampled_from(SMTP_WORDS), st.binary(max_size=200)),
                max_size=25))
def test_smtp_over_a_socket_survives_random_sequences(server, chunks):
    out = exchange(server.port("smtp"), chunks, timeout=2.0)
    assert out.startswith(b"220 ")
    smtp_replies(out[:out.rfind(b"\r\n") + 2])        # every complete line well-formed
    assert b"451 4.3.0 Internal error" not in out
    still_serving(server)


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(st.lists(st.one_of(st.sampled_from(POP3_WORDS), st.binary(max_size=200)),
                max_size=25))
def test_pop3_over_a_socket_survives_random_sequences(server, chunks):
    out = exchange(server.port("pop3"), chunks, timeout=2.0)
    assert out.startswith(b"+OK")
    assert b"internal error" not in out
    still_serving(server)
