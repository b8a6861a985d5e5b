"""The SMTP service on 127.0.0.1 driven by smtplib and raw sockets (pytest-twisted)."""

from __future__ import annotations

import smtplib

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.integration.smtp_live import LiveServer, RawClient, wait_for

MSG = b"From: x@remote.net\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def server(tmp_path):
    srv = LiveServer(tmp_path).start_blocking()
    yield srv
    pytest_twisted.blockon(srv.stop() or threads.deferToThread(lambda: None))


@pytest.fixture
def tls_server(tmp_path):
    srv = LiveServer(tmp_path, tls=True).start_blocking()
    yield srv
    pytest_twisted.blockon(srv.stop() or threads.deferToThread(lambda: None))


@pytest_twisted.ensureDeferred
async def test_smtplib_delivers_to_a_local_user(server):
    def send():
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as s:
            return s.sendmail("x@remote.net", ["alice@example.com"], MSG)
    assert await threads.deferToThread(send) == {}
    mail, ref = server.backend.accepted[0]
    assert [str(r) for r in mail.recipients] == ["alice@example.com"]
    assert mail.message_bytes().endswith(MSG) and mail.remote_addr == "127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_smtplib_relay_needs_auth_then_works(server):
    def send():
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as s:
            s.ehlo()
            try:
                s.sendmail("x@remote.net", ["v@far.net"], MSG)
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients["v@far.net"][0]
            s.login("alice", "secret")
            return refused, s.sendmail("alice@example.com", ["v@far.net"], MSG)
    refused, result = await threads.deferToThread(send)
    assert refused == 530 and result == {}
    assert server.backend.accepted[0][0].auth_user == "alice"


@pytest_twisted.ensureDeferred
async def test_smtplib_starttls_then_auth_login(tls_server):
    def send():
        with smtplib.SMTP("127.0.0.1", tls_server.port, timeout=5) as s:
            s.starttls(context=tls_server.client_context())
            s.ehlo()
            s.login("bob", "hunter2")  # smtplib picks PLAIN; force LOGIN below
            s.rset()
            return s.sendmail("bob@example.com", ["alice@example.com"], MSG)
    assert await threads.deferToThread(send) == {}
    mail, _ = tls_server.backend.accepted[0]
    assert mail.attributes["mailet_mta.smtp.tls"] is True
    assert b" with ESMTPSA id " in mail.message_bytes()


@pytest_twisted.ensureDeferred
async def test_implicit_tls_listener(tmp_path):
    srv = LiveServer(tmp_path, tls=True, implicit_tls=True)
    await srv.ready
    try:
        def send():
            with smtplib.SMTP_SSL("127.0.0.1", srv.port, timeout=5,
                                  context=srv.client_context()) as s:
                code, caps = s.ehlo()
                assert b"STARTTLS" not in caps
                return s.sendmail("x@remote.net", ["alice@example.com"], MSG)
        assert await threads.deferToThread(send) == {}
        assert srv.backend.accepted[0][0].attributes["mailet_mta.smtp.tls"] is True
    finally:
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_pipelined_batch_gets_replies_in_order(server):
    def talk():
        c = RawClient(server.port)
        c.reply()
        c.send(b"EHLO me\r\nMAIL FROM:<x@remote.net>\r\nRCPT TO:<nobody@example.com>\r\n"
               b"RCPT TO:<alice@example.com>\r\nRCPT TO:<v@far.net>\r\nDATA\r\n")
        codes = [r[:3] for r in c.replies(6)]
        c.send(b"body\r\n.\r\nQUIT\r\n")
        codes += [r[:3] for r in c.replies(2)]
        c.close()
        return codes
    assert await threads.deferToThread(talk) == ["250", "250", "550", "250", "530", "354",
                                                 "250", "221"]


@pytest_twisted.ensureDeferred
async def test_client_stalling_mid_data_does_not_block_others(server):
    staller = await threads.deferToThread(RawClient, server.port)

    def start_stall():
        staller.reply()
        staller.send(b"EHLO s\r\nMAIL FROM:<x@remote.net>\r\nRCPT TO:<bob@example.com>\r\n"
                     b"DATA\r\n")
        staller.replies(4)
        staller.send(b"Subject: slow\r\n\r\nfirst half")
    await threads.deferToThread(start_stall)

    def other():
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as s:
            return s.sendmail("x@remote.net", ["alice@example.com"], MSG)
    assert await threads.deferToThread(other) == {}
    assert len(server.backend.accepted) == 1

    def finish():
        staller.send(b" second half\r\n.\r\n")
        r = staller.reply()
        staller.close()
        return r
    assert (await threads.deferToThread(finish)).startswith("250")
    assert server.backend.message_bytes().endswith(b"first half second half\r\n")


@pytest_twisted.ensureDeferred
async def test_connection_dropped_mid_data_leaves_no_mail_and_no_blob(server):
    def drop():
        c = RawClient(server.port)
        c.reply()
        c.send(b"EHLO d\r\nMAIL FROM:<x@remote.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        c.replies(4)
        c.send(b"x" * 300_000)  # past the inline limit: spilled to a file
        c.close()
    await threads.deferToThread(drop)
    await wait_for(lambda: not server.service.factory.sessions)
    assert server.backend.accepted == [] and server.backend.leftover_files() == []


@pytest_twisted.ensureDeferred
async def test_large_message_is_stored_as_fsynced_blob_file(server):
    body = (b"z" * 998 + b"\r\n") * 500

    def send():
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
            return s.sendmail("x@remote.net", ["alice@example.com"], b"Subject: big\r\n\r\n"
                              + body)
    assert await threads.deferToThread(send) == {}
    mail, ref = server.backend.accepted[0]
    assert ref.data is None and server.backend.blobs.path_for(ref.id).exists()
    assert mail.message_bytes().endswith(body)


@pytest_twisted.ensureDeferred
async def test_graceful_shutdown_says_421_to_idle_sessions(server):
    c = await threads.deferToThread(RawClient, server.port)
    await threads.deferToThread(lambda: (c.reply(), c.send(b"EHLO x\r\n"), c.reply()))
    await wait_for(lambda: len(server.service.factory.sessions) == 1)
    await server.stop()
    line = await threads.deferToThread(c.reply)
    c.close()
    assert line == "421 4.3.2 mx.example.com Service shutting down"


@pytest_twisted.ensureDeferred
async def test_graceful_shutdown_lets_data_in_flight_finish(server):
    c = await threads.deferToThread(RawClient, server.port)

    def begin():
        c.reply()
        c.send(b"EHLO x\r\nMAIL FROM:<x@remote.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
               b"part one\r\n")
        return c.replies(4)
    await threads.deferToThread(begin)
    await wait_for(lambda: any(p._reader for p in server.service.factory.sessions))
    stopping = server.stop()

    def end():
        c.send(b"part two\r\n.\r\n")
        return c.replies(2)
    replies = await threads.deferToThread(end)
    await stopping
    c.close()
    assert replies[0].startswith("250 2.0.0 Ok: queued") and replies[1].startswith("421 4.3.2")
    assert len(server.backend.accepted) == 1


@pytest_twisted.ensureDeferred
async def test_connection_limit_per_ip_answers_421(tmp_path):
    srv = LiveServer(tmp_path, connection_limit_per_ip=1)
    await srv.ready
    try:
        first = await threads.deferToThread(RawClient, srv.port)
        assert (await threads.deferToThread(first.reply)).startswith("220")
        second = await threads.deferToThread(RawClient, srv.port)
        assert (await threads.deferToThread(second.reply)).startswith("421 4.7.0")
        first.close()
        second.close()
    finally:
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_bdat_chunks_over_tcp(server):
    def talk():
        c = RawClient(server.port)
        c.reply()
        c.send(b"EHLO b\r\nMAIL FROM:<x@remote.net>\r\nRCPT TO:<bob@example.com>\r\n"
               b"BDAT 7\r\n.\r\n\r\n.\rBDAT 6 LAST\r\n\nend\r\nQUIT\r\n")
        r = [x[:3] for x in c.replies(6)]
        c.close()
        return r
    assert await threads.deferToThread(talk) == ["250", "250", "250", "250", "250", "221"]
    assert server.backend.message_bytes().endswith(b"\r\n.\r\n\r\n.\r\nend\r\n")


@pytest_twisted.ensureDeferred
async def test_accepted_sockets_have_tcp_nodelay(server):
    import socket
    c = await threads.deferToThread(RawClient, server.port)
    await threads.deferToThread(c.reply)
    (proto,) = list(server.service.factory.sessions)
    sock = proto.transport.getHandle()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    c.close()


@pytest_twisted.ensureDeferred
async def test_spool_failure_on_large_message_answers_451_and_leaves_no_file(server):
    server.backend.accept_error = OSError("database is locked")
    body = (b"w" * 998 + b"\r\n") * 200

    def send():
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
            try:
                s.sendmail("x@remote.net", ["alice@example.com"], body)
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code
    assert await threads.deferToThread(send) == 451
    assert server.backend.accepted == [] and server.backend.leftover_files() == []
