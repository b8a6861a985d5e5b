"""SMTP replies reach the socket in the call that produced them.

A TCP transport only buffers a write and sends it at the reactor's next poll. These
tests hand a session its input themselves and then wait on the client socket while
the reactor is held (the test runs in the reactor's thread), so a reply that was only
buffered is never seen.
"""

from __future__ import annotations

import select
import socket

import pytest_twisted
from twisted.internet import defer, reactor, task

from mailet_mta.smtp.server import SMTPServerFactory
from tests.support.smtp_backend import RecordingBackend, smtp_config


def _received_now(sock: socket.socket, wait: float = 0.5) -> bytes:
    """What has reached ``sock``, waited for without letting the reactor run."""
    out = b""
    while select.select([sock], [], [], wait)[0]:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
        wait = 0.05
    return out


async def _until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not met within 5 s")


async def _session(tmp_path):
    backend = RecordingBackend(tmp_path / "blobs")
    factory = SMTPServerFactory(smtp_config(), backend)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    await _until(lambda: factory.sessions)
    (proto,) = factory.sessions
    return backend, port, client, proto


async def _close(port, client) -> None:
    client.close()
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_replies_to_a_pipelined_group_are_on_the_socket_when_it_was_handled(tmp_path):
    backend, port, client, proto = await _session(tmp_path)
    try:
        assert _received_now(client).startswith(b"220 ")      # sent by connectionMade
        proto.dataReceived(b"EHLO client.example.net\r\nMAIL FROM:<x@remote.net>\r\n"
                           b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
        replies = _received_now(client).split(b"\r\n")
        assert replies[0].startswith(b"250-") and replies[-2].startswith(b"354 ")
        assert [r[:4] for r in replies if r[3:4] == b" "] == [b"250 ", b"250 ", b"250 ",
                                                             b"354 "]
    finally:
        await _close(port, client)


@pytest_twisted.ensureDeferred
async def test_the_250_after_the_commit_is_on_the_socket_when_the_mail_was_accepted(
        tmp_path):
    backend, port, client, proto = await _session(tmp_path)
    try:
        _received_now(client)
        proto.dataReceived(b"EHLO client.example.net\r\nMAIL FROM:<x@remote.net>\r\n"
                           b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
        _received_now(client)
        gate = backend.accept_gate = defer.Deferred()
        proto.dataReceived(b"Subject: now\r\n\r\nbody\r\n.\r\n")
        await _until(lambda: backend.accept_gate is None)    # accept() is waiting on it
        assert _received_now(client, 0.05) == b""
        gate.callback(None)                                   # the commit completes
        assert _received_now(client).startswith(b"250 2.0.0 Ok: queued as ")
        assert len(backend.accepted) == 1
    finally:
        await _close(port, client)


@pytest_twisted.ensureDeferred
async def test_what_the_socket_does_not_take_follows_in_order(tmp_path):
    backend, port, client, proto = await _session(tmp_path)
    try:
        _received_now(client)
        # A client that pipelines far more than the socket buffers and reads nothing:
        # the replies are sent at once until one is taken in part, the rest waits in
        # the transport and then in the input, and every reply arrives, in order, once
        # it reads.
        proto.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sends = []                  # (octets offered, octets the socket took)
        send = proto.transport.writeSomeData
        proto.transport.writeSomeData = lambda data: sends.append(
            (len(data), send(data))) or sends[-1][1]
        count = 20000
        for i in range(0, count, 1000):
            proto.dataReceived(b"".join(b"HELP %d\r\n" % n for n in range(i, i + 1000)))
        received = b""
        for _ in range(1000):       # the reactor sends the rest as the client reads
            if received.count(b"\r\n") >= count:
                break
            received += _received_now(client, 0.05)
            await task.deferLater(reactor, 0.01, lambda: None)
        lines = received.split(b"\r\n")[:-1]
        assert len(lines) == count
        assert all(line == b"504 5.5.4 HELP topic '%d' unknown" % n
                   for n, line in enumerate(lines))
        assert any(sent < size for size, sent in sends)      # a send taken in part
    finally:
        await _close(port, client)
