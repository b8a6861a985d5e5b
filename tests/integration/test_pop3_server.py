"""POP3 end to end: Python's poplib (and curl) against a real server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import poplib
import shutil
import socket
import ssl
import subprocess
import time
import tracemalloc

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from tests.integration.pop3_server_fixture import (
    PASSWORD,
    USER,
    prepare_database,
    start_server,
    stop_server,
)
from tests.support.messages import corpus

PREFIX = b"Delivered-To: bob@example.com\r\n"


@pytest.fixture
def url(tmp_path):
    url = "sqlite:///" + str(tmp_path / "pop3.sqlite3")
    prepare_database(url)
    return url


@pytest.fixture
def server(url, tmp_path):
    srv = pytest_twisted.blockon(defer_start(url, tmp_path / "blobs"))
    yield srv
    stop_server(srv)


def defer_start(*args, **kwargs):
    from twisted.internet import defer

    return defer.ensureDeferred(start_server(*args, **kwargs))


def in_thread(fn, *args):
    return threads.deferToThread(fn, *args)


def _client(port) -> poplib.POP3:
    c = poplib.POP3("127.0.0.1", port, timeout=10)
    c.user(USER)
    c.pass_(PASSWORD)
    return c


@pytest_twisted.ensureDeferred
async def test_every_command_with_poplib(server):
    await server.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    await server.deliver(b"Subject: two\r\n\r\nsecond\r\nline\r\n")

    def session():
        c = poplib.POP3("127.0.0.1", server.port, timeout=10)
        out = {"welcome": c.getwelcome(), "capa": c.capa()}
        c.user(USER)
        out["pass"] = c.pass_(PASSWORD)
        out["stat"] = c.stat()
        out["list"] = c.list()
        out["list1"] = c.list(1)
        out["uidl"] = c.uidl()
        out["retr"] = c.retr(1)
        out["top"] = c.top(2, 1)
        out["noop"] = c.noop()
        out["dele"] = c.dele(1)
        out["stat2"] = c.stat()
        out["rset"] = c.rset()
        out["dele2"] = c.dele(2)
        out["quit"] = c.quit()
        return out

    out = await in_thread(session)
    assert out["welcome"].startswith(b"+OK")
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING", "SASL"):
        assert cap in out["capa"]
    size1 = len(PREFIX) + len(b"Subject: one\r\n\r\nfirst\r\n")
    size2 = len(PREFIX) + len(b"Subject: two\r\n\r\nsecond\r\nline\r\n")
    assert out["stat"] == (2, size1 + size2)
    assert out["list"][1] == [b"1 %d" % size1, b"2 %d" % size2]
    assert out["list1"] == b"+OK 1 %d" % size1
    assert len(out["uidl"][1]) == 2
    assert out["retr"][1] == [PREFIX.rstrip(), b"Subject: one", b"", b"first"]
    assert out["retr"][0] == b"+OK %d octets" % size1
    assert out["top"][1] == [PREFIX.rstrip(), b"Subject: two", b"", b"second"]
    assert out["stat2"] == (1, size2)
    assert out["quit"].startswith(b"+OK")

    def after():
        c = _client(server.port)
        stat = c.stat()
        c.quit()
        return stat

    assert await in_thread(after) == (1, size1)


@pytest_twisted.ensureDeferred
async def test_corpus_comes_back_byte_identical_through_retr(server, monkeypatch):
    monkeypatch.setattr(poplib, "_MAXLINE", 1 << 20)
    messages = corpus()
    assert len(messages) >= 8
    for body in messages.values():
        await server.deliver(body)

    def fetch_all():
        c = _client(server.port)
        sizes = {int(a): int(b) for a, b in (line.split() for line in c.list()[1])}
        got = []
        for number in range(1, len(messages) + 1):
            resp, lines, octets = c.retr(number)
            got.append((resp, b"\r\n".join(lines) + b"\r\n", sizes[number]))
        c.quit()
        return got

    got = await in_thread(fetch_all)
    for (name, body), (resp, text, size) in zip(messages.items(), got):
        expected = PREFIX + body + (b"" if body.endswith(b"\r\n") else b"\r\n")
        assert text == expected, name
        assert resp == b"+OK %d octets" % size
        assert size == len(PREFIX) + len(body), name


def _raw_retr(port, number=1):
    """Log in with a raw socket and return RETR's exact bytes up to '.CRLF'."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\nRETR {number}\r\nQUIT\r\n".encode())
        data = b""
        while not data.endswith(b"+OK bye (0 messages deleted)\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


@pytest_twisted.ensureDeferred
async def test_wire_bytes_are_stuffed_and_terminated(server):
    await server.deliver(corpus()["lone-dot-line.eml"], prefix=b"")
    await server.deliver(corpus()["no-trailing-crlf.eml"], prefix=b"")
    raw = await in_thread(_raw_retr, server.port, 1)
    assert b"\r\nabove\r\n..\r\nbelow" in raw
    raw = await in_thread(_raw_retr, server.port, 2)
    assert b"the last line has no CRLF\r\n.\r\n+OK bye" in raw


@pytest_twisted.ensureDeferred
async def test_uidl_is_stable_across_sessions(server):
    for i in range(3):
        await server.deliver(b"Subject: %d\r\n\r\nx\r\n" % i)

    def uidls():
        c = _client(server.port)
        out = c.uidl()[1]
        c.quit()
        return out

    first = await in_thread(uidls)
    await server.deliver(b"Subject: new\r\n\r\ny\r\n")
    second = await in_thread(uidls)
    assert second[:3] == first
    assert len(set(line.split()[1] for line in second)) == 4


@pytest_twisted.ensureDeferred
async def test_second_connection_to_the_same_mailbox_is_in_use(server):
    def two_sessions():
        first = _client(server.port)
        second = poplib.POP3("127.0.0.1", server.port, timeout=10)
        second.user(USER)
        with pytest.raises(poplib.error_proto) as err:
            second.pass_(PASSWORD)
        first.quit()
        second.user(USER)
        ok = second.pass_(PASSWORD)
        second.quit()
        return err.value.args[0], ok

    refused, ok = await in_thread(two_sessions)
    assert refused.startswith(b"-ERR [IN-USE]")
    assert ok.startswith(b"+OK")


@pytest_twisted.ensureDeferred
async def test_in_use_across_processes_sharing_the_database(server, url, tmp_path):
    """A second Database on the same file stands for a second process."""
    other = await start_server(url, tmp_path / "blobs", node="node-b")
    try:
        def sessions():
            first = _client(server.port)
            second = poplib.POP3("127.0.0.1", other.port, timeout=10)
            second.user(USER)
            with pytest.raises(poplib.error_proto) as err:
                second.pass_(PASSWORD)
            first.quit()
            return err.value.args[0]

        assert (await in_thread(sessions)).startswith(b"-ERR [IN-USE]")
    finally:
        await other.service.stopService()
        await other.db.stop()


@pytest_twisted.ensureDeferred
async def test_killed_connection_deletes_nothing(server):
    await server.deliver(b"Subject: keep me\r\n\r\nx\r\n")

    def kill_mid_session():
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\nDELE 1\r\n".encode())
        data = b""
        while data.count(b"\r\n") < 4:
            data += s.recv(4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()                                  # RST, no QUIT
        return data

    data = await in_thread(kill_mid_session)
    assert data.endswith(b"+OK message 1 deleted\r\n")
    for _ in range(100):                           # the lease is released on disconnect
        await task.deferLater(reactor, 0.02, lambda: None)
        try:
            stat = await in_thread(lambda: _stat_and_quit(server.port))
            break
        except poplib.error_proto as exc:
            assert exc.args[0].startswith(b"-ERR [IN-USE]")
    assert stat[0] == 1


def _stat_and_quit(port):
    c = _client(port)
    try:
        return c.stat()
    finally:
        c.quit()


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_auth_error(server):
    def bad():
        c = poplib.POP3("127.0.0.1", server.port, timeout=10)
        c.user(USER)
        with pytest.raises(poplib.error_proto) as err:
            c.pass_("wrong")
        c.quit()
        return err.value.args[0]

    assert (await in_thread(bad)).startswith(b"-ERR [AUTH]")


@pytest_twisted.ensureDeferred
async def test_stls_then_login(url, tmp_path):
    srv = await start_server(url, tmp_path / "blobs", tls_dir=tmp_path / "tls",
                             require_ssl=True)
    try:
        await srv.deliver(b"Subject: secret\r\n\r\nover TLS\r\n")
        await srv.deliver(b"Subject: more\r\n\r\nread ahead, over TLS\r\n")

        def session():
            c = poplib.POP3("127.0.0.1", srv.port, timeout=10)
            assert "STLS" in c.capa()
            with pytest.raises(poplib.error_proto) as err:
                c.user(USER)
            assert err.value.args[0].startswith(b"-ERR [AUTH]")
            ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / "cert.pem"))
            c.stls(ctx)
            assert "STLS" not in c.capa()
            c.user(USER)
            c.pass_(PASSWORD)
            listed = c.list()[1]
            # Both answered from the read-ahead, in one piece, through TLS.
            lines = [c.retr(1)[1][-1], c.retr(2)[1][-1]]
            c.quit()
            return listed, lines

        listed, lines = await in_thread(session)
        assert len(listed) == 2 and lines == [b"over TLS", b"read ahead, over TLS"]
    finally:
        await srv.service.stopService()
        await srv.db.stop()


@pytest_twisted.ensureDeferred
async def test_pop3s_implicit_tls(url, tmp_path):
    srv = await start_server(url, tmp_path / "blobs", tls_dir=tmp_path / "tls",
                             implicit_tls=True, require_ssl=True)
    try:
        await srv.deliver(b"Subject: s\r\n\r\nimplicit\r\n")

        def session():
            ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / "cert.pem"))
            c = poplib.POP3_SSL("127.0.0.1", srv.port, context=ctx, timeout=10)
            caps = c.capa()
            c.user(USER)
            c.pass_(PASSWORD)
            lines = c.retr(1)[1]
            c.quit()
            return caps, lines

        caps, lines = await in_thread(session)
        assert "STLS" not in caps
        assert lines[-1] == b"implicit"
    finally:
        await srv.service.stopService()
        await srv.db.stop()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest_twisted.ensureDeferred
async def test_curl_retrieves_a_message(server):
    protocols = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    if "pop3" not in protocols:
        pytest.skip("this curl was built without pop3")
    await server.deliver(b"Subject: curl\r\n\r\n.dotted\r\nfetched by curl\r\n")

    def fetch():
        return subprocess.run(
            ["curl", "-s", "--max-time", "10", "-u", f"{USER}:{PASSWORD}",
             f"pop3://127.0.0.1:{server.port}/1"], capture_output=True, timeout=20)

    result = await in_thread(fetch)
    assert result.returncode == 0, result.stderr
    assert result.stdout == PREFIX + b"Subject: curl\r\n\r\n.dotted\r\nfetched by curl\r\n"


@pytest_twisted.ensureDeferred
async def test_50_mb_retr_streams_with_bounded_memory(server):
    line = b"." + b"y" * 74 + b"\r\n"                         # every line needs stuffing
    writer = server.blobs.writer()
    digest = hashlib.sha256()
    for _ in range(50 * 1024 * 1024 // len(line)):
        writer.write(line)
        digest.update(line)
    ref = await writer.finish()
    await server.deliver_blob(ref)
    expected = digest.hexdigest()

    def retrieve():
        """Read RETR's response line by line with a bounded buffer; unstuff and hash."""
        h = hashlib.sha256()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\nRETR 1\r\n".encode())
            buf = b""
            while buf.count(b"\r\n") < 4:
                buf += s.recv(65536)
            _greeting, _user, _pass, status, buf = buf.split(b"\r\n", 4)
            while True:
                cut = buf.rfind(b"\r\n") + 2
                lines, buf = buf[:cut], buf[cut:]
                if lines.endswith(b"\r\n.\r\n") or lines == b".\r\n":
                    lines, done = lines[:-3], True
                else:
                    done = False
                h.update((b"\r\n" + lines).replace(b"\r\n..", b"\r\n.")[2:])
                if done:
                    break
                chunk = s.recv(1 << 20)
                assert chunk, "connection closed before the end of the message"
                buf += chunk
            s.sendall(b"QUIT\r\n")
        return status, h.hexdigest()

    tracemalloc.start()
    try:
        start = time.monotonic()
        status, got = await in_thread(retrieve)
        elapsed = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == b"+OK %d octets" % ref.size
    assert got == expected
    assert peak < 16 * 1024 * 1024, f"peak {peak} octets while sending 50 MB"
    assert elapsed < 60


@pytest_twisted.ensureDeferred
async def test_a_message_imap_expunged_during_a_session_is_an_err_and_numbers_hold(
        server, url, tmp_path):
    """IMAP (here a second store on the same database: another process) expunges
    message 1 while a POP3 session holds its listing."""
    for n in range(3):
        await server.deliver(b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n))
    other = await start_server(url, tmp_path / "blobs", node="imap-node")
    try:
        client = await in_thread(_client, server.port)
        snap = await other.backend.select(USER, "INBOX")
        assert await other.backend.expunge_messages(USER, "INBOX", [snap.ids[0]]) == [
            snap.ids[0]]

        def session():
            with pytest.raises(poplib.error_proto) as gone:
                client.retr(1)
            second = client.retr(2)[1]
            listing = client.list()[1]
            client.dele(2)
            client.quit()
            return gone.value.args[0], second, listing
        gone, second, listing = await in_thread(session)
        assert gone.startswith(b"-ERR") and b"no longer exists" in gone
        assert b"body 1" in b"\r\n".join(second)            # message 2 is still number 2
        assert [line.split()[0] for line in listing] == [b"1", b"2", b"3"]
        remaining = await other.backend.select(USER, "INBOX")
        assert list(remaining.uids) == [3]
        changes = await other.backend.changes(USER, "INBOX", snap.status.highest_modseq)
        assert changes.expunged_uids == [1, 2]
    finally:
        await other.service.stopService()
        await other.db.stop()
