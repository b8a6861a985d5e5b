"""Back-pressure on the IMAP server: clients that ask for a lot and never read.

``FETCH 1:* BODY[]`` over a folder of large messages, or thousands of pipelined
``CAPABILITY`` commands, from a client that reads nothing: the server writes a batch,
waits for the transport to drain and stops reading, so its memory (VmRSS) stays flat
while the folder is many times larger than the bound, and other sessions are answered.
"""

from __future__ import annotations

import imaplib
import socket
import time

import pytest

from tests.abuse.test_backpressure import Flooder, rss_kb
from tests.support.server import ServerProcess, base_config

PASSWORD = "backpressure test password"
USER = "alice@example.com"
MESSAGES = 24
MESSAGE_OCTETS = 1024 * 1024
MAX_GROWTH_KB = 12 * 1024        # the folder holds 24 MiB
SECONDS = 8


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, base_config(tmp_path / "var"))
    srv.add_user(USER, PASSWORD)
    srv.start()
    box = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=30)
    box.login(USER, PASSWORD)
    line = b"x" * 998 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (MESSAGE_OCTETS // len(line))
    for _ in range(MESSAGES):
        assert box.append("INBOX", None, None, body)[0] == "OK"
    box.logout()
    yield srv
    srv.stop()


def _logged_in_socket(srv) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port("imap")), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f"a LOGIN {USER} \"{PASSWORD}\"\r\nb SELECT INBOX\r\n".encode())
    while not f.readline().startswith(b"b OK"):
        pass
    return sock


def _other_session(srv) -> float:
    started = time.monotonic()
    box = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    box.login(USER, PASSWORD)
    box.select("INBOX")
    assert box.noop()[0] == "OK"
    box.logout()
    return time.monotonic() - started


def _measure(srv, sock, chunk: bytes | None) -> tuple[int, list[float]]:
    pid = srv.proc.pid
    _other_session(srv)
    base = peak = rss_kb(pid)
    flooder = None
    if chunk is None:
        sock.sendall(b"f FETCH 1:* BODY[]\r\n")
    else:
        flooder = Flooder(sock, chunk, SECONDS)
        flooder.start()
    took = []
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        if len(took) < 3:
            took.append(_other_session(srv))
        time.sleep(0.25)
        peak = max(peak, rss_kb(pid))
    if flooder is not None:
        flooder.join(SECONDS)
        assert flooder.closed_after is None, "the server dropped the flooding client"
    sock.close()
    print(f"RSS {base} -> {peak} KiB, others took {took}")
    return peak - base, took


def test_fetch_of_every_body_to_a_client_that_never_reads_does_not_grow_memory(server):
    sock = _logged_in_socket(server)
    growth, took = _measure(server, sock, None)
    assert growth < MAX_GROWTH_KB, f"RSS grew by {growth} KiB"
    assert max(took) < 5.0, took


def test_pipelined_commands_without_reading_do_not_grow_memory(server):
    sock = _logged_in_socket(server)
    growth, took = _measure(server, sock, b"c CAPABILITY\r\n" * 4096)
    assert growth < MAX_GROWTH_KB, f"RSS grew by {growth} KiB"
    assert max(took) < 5.0, took
