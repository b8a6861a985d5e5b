"""send_now on a real loopback TCP connection: sent without the reactor's write round
when nothing is queued, through the transport's buffer (in order) when something is."""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater

from mailet_mta.flow.direct_send import send_now


class _Held(protocol.Protocol):
    def connectionMade(self):
        self.factory.made.callback(self)


async def _connection():
    """A server-side transport of a real TCP connection, and the client's socket."""
    factory = protocol.ServerFactory()
    factory.protocol = _Held
    factory.made = defer.Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    client.settimeout(10)
    server = await factory.made
    return port, server.transport, client


def _read(client, n: int) -> bytes:
    got = b""
    while len(got) < n:
        more = client.recv(n - len(got))
        assert more, "connection closed"
        got += more
    return got


@pytest_twisted.ensureDeferred
async def test_a_reply_on_an_idle_connection_is_sent_without_a_write_round():
    port, transport, client = await _connection()
    try:
        send_now(transport, b"250 2.0.0 Ok\r\n")
        assert transport not in reactor.getWriters()      # never registered for writing
        assert not transport._tempDataBuffer and not transport.dataBuffer
        assert _read(client, 14) == b"250 2.0.0 Ok\r\n"
    finally:
        client.close()
        transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_behind_queued_bytes_a_reply_waits_its_turn():
    port, transport, client = await _connection()
    try:
        transport.write(b"HEAD ")          # queued until the reactor's next turn
        send_now(transport, b"TAIL")
        assert transport in reactor.getWriters()
        client.setblocking(False)
        got = b""
        for _ in range(1000):              # the reactor writes on its next turns
            await deferLater(reactor, 0.001, lambda: None)
            try:
                got += client.recv(100)
            except BlockingIOError:
                continue
            if len(got) >= 9:
                break
        assert got == b"HEAD TAIL"
    finally:
        client.close()
        transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_test_transport_gets_a_plain_write():
    from twisted.internet.testing import StringTransport

    transport = StringTransport()
    send_now(transport, b"250 ok\r\n")
    assert transport.value() == b"250 ok\r\n"
