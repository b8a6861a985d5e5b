"""Back-pressure against a real ``mailet-mta`` process: clients that send and never read.

A client that pipelines commands (``CAPA`` on POP3, ``EHLO`` on SMTP) and never reads
the replies must not make the server buffer them without bound: the server stops
reading from that client while its replies wait, so its memory (VmRSS of the process)
stays flat, other clients are answered as usual, and the idle timeout still ends the
silent connection. The same holds over STARTTLS/STLS and implicit TLS.

Each flood gets a server of its own; the other tests share one. Every flood is bounded
in time (``FLOOD_SECONDS``) and all traffic is on 127.0.0.0/8.
"""

from __future__ import annotations

import poplib
import smtplib
import socket
import ssl
import threading
import time

import pytest

from tests.soak.harness import local_only_processors
from tests.support.certs import make_cert
from tests.support.server import ServerProcess, base_config

PASSWORD = "backpressure test password"
FLOOD_SECONDS = 10
MAX_GROWTH_KB = 20 * 1024
IDLE_TIMEOUT = 3
PER_IP = 2


def start_server(root):
    cert, key = make_cert(root / "certs")
    tls = {"certificate": str(cert), "privateKey": str(key)}
    listen = "tcp:0:interface=127.0.0.1"
    common = {"authRequired": True, "authorizedAddresses": ["127.0.0.1/32"]}
    smtp = [
        {"name": "smtp", "listen": listen, "connectionTimeout": 60, "tls": tls, **common},
        {"name": "smtps", "listen": listen, "connectionTimeout": 60, "implicitTLS": True,
         "tls": tls, **common},
        {"name": "smtp_idle", "listen": listen, "connectionTimeout": IDLE_TIMEOUT,
         **common},
    ]
    pop3 = [
        {"name": "pop3", "listen": listen, "connectionTimeout": 60, "tls": tls},
        {"name": "pop3s", "listen": listen, "connectionTimeout": 60, "implicitTLS": True,
         "tls": tls},
        {"name": "pop3_idle", "listen": listen, "connectionTimeout": IDLE_TIMEOUT},
        {"name": "pop3_limited", "listen": listen, "connectionLimitPerIP": PER_IP},
    ]
    config = base_config(root / "var", smtp=smtp, pop3=pop3,
                         processors=local_only_processors())
    srv = ServerProcess(root, config)
    srv.add_user("alice@example.com", PASSWORD)
    srv.add_user("bob@example.com", PASSWORD)     # a mailbox of large mails, to flood
    return srv.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("backpressure"))
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path):
    """A server of its own: memory a process once took is not given back, so a flood
    measured after another one would hide its growth."""
    srv = start_server(tmp_path)
    yield srv
    srv.stop()


# -- the non-reading client ----------------------------------------------------------------
def _tls_client() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _read_until(sock, marker: bytes, limit: int = 65536) -> bytes:
    sock.settimeout(10)
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def open_client(srv, listener: str, upgrade: bytes | None = None):
    """A connected socket past the greeting; ``upgrade`` (STARTTLS/STLS) or an implicit
    TLS listener gives a TLS socket."""
    sock = socket.create_connection(("127.0.0.1", srv.port(listener)), timeout=10)
    if listener.endswith("s"):
        sock = _tls_client().wrap_socket(sock)
    _read_until(sock, b"\r\n")
    if upgrade is not None:
        if upgrade.startswith(b"STARTTLS"):
            sock.sendall(b"EHLO flood.example\r\n")
            _read_until(sock, b"250 ")
        sock.sendall(upgrade)
        reply = _read_until(sock, b"\r\n")
        assert reply.startswith((b"220", b"+OK")), reply
        sock = _tls_client().wrap_socket(sock)
    return sock


class Flooder(threading.Thread):
    """Sends ``chunk`` again and again for ``seconds`` and never reads; stops early when
    the server ends the connection (``closed_after`` seconds after the start)."""

    def __init__(self, sock, chunk: bytes, seconds: float):
        super().__init__(daemon=True)
        self.sock, self.chunk, self.seconds = sock, chunk, seconds
        self.sent = 0
        self.closed_after: float | None = None

    def run(self):
        self.sock.settimeout(0.2)
        started = time.monotonic()
        while time.monotonic() - started < self.seconds:
            try:
                self.sock.sendall(self.chunk)      # a TLS retry must repeat the same buffer
                self.sent += len(self.chunk)
            except (TimeoutError, ssl.SSLWantWriteError):
                continue
            except (OSError, ssl.SSLError):
                self.closed_after = time.monotonic() - started
                return


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def flood_and_measure(srv, sock, chunk: bytes, second_client) -> tuple[int, list[float]]:
    """Flood for FLOOD_SECONDS; returns the growth of the server's RSS in KiB and the
    seconds each of three sessions of ``second_client`` took meanwhile."""
    pid = srv.proc.pid
    second_client()                                 # warm: the first login's own cost
    base = peak = rss_kb(pid)
    flooder = Flooder(sock, chunk, FLOOD_SECONDS)
    flooder.start()
    took, deadline = [], time.monotonic() + FLOOD_SECONDS
    try:
        while time.monotonic() < deadline:
            if len(took) < 3 and time.monotonic() > deadline - FLOOD_SECONDS * 0.8:
                started = time.monotonic()
                second_client()
                took.append(time.monotonic() - started)
            time.sleep(0.25)
            peak = max(peak, rss_kb(pid))
        flooder.join(FLOOD_SECONDS)
        peak = max(peak, rss_kb(pid))
    finally:
        sock.close()
    print(f"flood: {flooder.sent} octets sent, RSS {base} -> {peak} KiB, "
          f"others took {took}")
    assert flooder.closed_after is None, "the server dropped the flooding client"
    return peak - base, took


def pop3_client(srv, listener: str = "pop3"):
    def session():
        c = poplib.POP3("127.0.0.1", srv.port(listener), timeout=10)
        try:
            assert "USER" in "".join(c.capa())
            c.user("alice@example.com")
            c.pass_(PASSWORD)
            c.stat()
        finally:
            c.quit()
    return session


def smtp_client(srv):
    def session():
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            assert s.ehlo("second.example")[0] == 250
            assert s.noop()[0] == 250
            s.sendmail("carol@client.example", ["alice@example.com"],
                       b"Subject: during a flood\r\n\r\nhello\r\n")
    return session


CAPA = b"CAPA\r\n" * 4096
EHLO = b"EHLO flood.example\r\n" * 2048


FLOODS = {   # listener, STARTTLS/STLS or None, the pipelined command, the other client
    "pop3-capa": ("pop3", None, CAPA, pop3_client),
    "pop3-stls-capa": ("pop3", b"STLS\r\n", CAPA, pop3_client),
    "pop3s-capa": ("pop3s", None, CAPA, pop3_client),
    "smtp-ehlo": ("smtp", None, EHLO, smtp_client),
    "smtp-starttls-ehlo": ("smtp", b"STARTTLS\r\n", EHLO, smtp_client),
    "smtps-ehlo": ("smtps", None, EHLO, smtp_client),
}


@pytest.mark.parametrize("flood", list(FLOODS))
def test_client_pipelining_without_reading_does_not_grow_memory(fresh_server, flood):
    listener, upgrade, chunk, other_client = FLOODS[flood]
    sock = open_client(fresh_server, listener, upgrade)
    growth, took = flood_and_measure(fresh_server, sock, chunk, other_client(fresh_server))
    assert growth < MAX_GROWTH_KB, f"RSS grew by {growth} KiB"
    assert len(took) == 3 and max(took) < 5.0, took


def test_pop3_list_and_retr_pipelined_without_reading_do_not_grow_memory(fresh_server):
    """The transaction commands whose replies go to the socket at once (a whole LIST or
    UIDL, a RETR answered from the read-ahead, which a LIST also starts): a client
    that pipelines them over a mailbox of 100 KB messages and never reads fills the
    socket, the rest waits in the transport under its bound, and no further command
    is handled; other sessions are served meanwhile."""
    srv = fresh_server
    body = b"Subject: read me\r\n\r\n" + (b"x" * 78 + b"\r\n") * 1300      # ~100 KB
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
        for _ in range(20):
            s.sendmail("carol@client.example", ["bob@example.com"], body)
    deadline = time.monotonic() + 30
    while True:
        c = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
        c.user("bob@example.com")
        c.pass_(PASSWORD)
        count = c.stat()[0]
        c.quit()
        if count == 20:
            break
        assert time.monotonic() < deadline, f"{count} of 20 delivered"
        time.sleep(0.2)
    sock = open_client(srv, "pop3")
    sock.sendall(b"USER bob@example.com\r\n")
    assert _read_until(sock, b"\r\n").startswith(b"+OK")
    sock.sendall(f"PASS {PASSWORD}\r\n".encode())
    assert _read_until(sock, b"\r\n").startswith(b"+OK")
    chunk = b"LIST\r\nUIDL\r\n" + b"".join(b"RETR %d\r\n" % n for n in range(1, 21))
    growth, took = flood_and_measure(srv, sock, chunk * 16, pop3_client(srv))
    assert growth < MAX_GROWTH_KB, f"RSS grew by {growth} KiB"
    assert len(took) == 3 and max(took) < 5.0, took


@pytest.mark.parametrize("listener,chunk", [("smtp_idle", EHLO), ("pop3_idle", CAPA)])
def test_client_that_sends_but_never_reads_is_cut_at_the_idle_timeout(server, listener,
                                                                       chunk):
    sock = open_client(server, listener)
    flooder = Flooder(sock, chunk, IDLE_TIMEOUT + 12)
    try:
        flooder.start()
        flooder.join(IDLE_TIMEOUT + 15)
    finally:
        sock.close()
    print(f"{listener}: {flooder.sent} octets sent, cut after {flooder.closed_after} s")
    assert flooder.closed_after is not None, "the idle timeout never fired"
    assert flooder.closed_after < IDLE_TIMEOUT + 10


def _pop3_greeting(port: int, source: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(source, 0))
    return sock, _read_until(sock, b"\r\n")


def test_pop3_connections_beyond_the_per_ip_limit_are_refused(server):
    port = server.port("pop3_limited")
    held = []
    try:
        for _ in range(PER_IP):
            sock, line = _pop3_greeting(port, "127.0.0.1")
            held.append(sock)
            assert line.startswith(b"+OK"), line
        sock, line = _pop3_greeting(port, "127.0.0.1")
        sock.close()
        assert line.startswith(b"-ERR [SYS/TEMP]") and b"127.0.0.1" in line, line
        sock, line = _pop3_greeting(port, "127.0.0.2")      # another address is served
        held.append(sock)
        assert line.startswith(b"+OK"), line
        held.pop(0).close()                                  # a slot comes back
        deadline = time.monotonic() + 10
        while True:
            sock, line = _pop3_greeting(port, "127.0.0.1")
            held.append(sock)
            if line.startswith(b"+OK") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert line.startswith(b"+OK"), line
    finally:
        for sock in held:
            sock.close()
