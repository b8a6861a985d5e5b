"""RETR reads the following messages in the same query, and never serves a stale one."""

from __future__ import annotations

import poplib

import pytest
import pytest_twisted
from twisted.internet import defer, tcp, threads

from mailet_mta.pop3.commands import READAHEAD_MESSAGES
from tests.integration.pop3_server_fixture import (
    PASSWORD,
    USER,
    prepare_database,
    start_server,
    stop_server,
)

PREFIX = b"Delivered-To: bob@example.com\r\n"


@pytest.fixture
def server(tmp_path):
    url = "sqlite:///" + str(tmp_path / "pop3.sqlite3")
    prepare_database(url)
    srv = pytest_twisted.blockon(defer.ensureDeferred(start_server(url, tmp_path / "blobs")))
    calls = []
    original = srv.backend.open_messages

    def counting(ids):
        calls.append(list(ids))
        return original(ids)

    srv.backend.open_messages = counting
    srv.extra.append(calls)
    yield srv
    stop_server(srv)


def body(n: int, size: int = 300) -> bytes:
    return b"Subject: m%d\r\n\r\n" % n + (b"line %d\r\n" % n) * (size // 10)


def retr_all(port, dele=()) -> list[bytes | None]:
    c = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        c.user(USER)
        c.pass_(PASSWORD)
        for n in dele:
            c.dele(n)
        out = []
        for n in range(1, c.stat()[0] + len(dele) + 1):
            try:
                out.append(b"\r\n".join(c.retr(n)[1]) + b"\r\n")
            except poplib.error_proto:
                out.append(None)
        return out
    finally:
        c.quit()


@pytest_twisted.ensureDeferred
async def test_in_order_retr_of_every_message_reads_the_store_once_per_window(server):
    count = READAHEAD_MESSAGES + 6
    for n in range(count):
        await server.deliver(body(n))
    got = await threads.deferToThread(retr_all, server.port)
    assert got == [PREFIX + body(n) for n in range(count)]
    calls = server.extra[0]
    assert len(calls) == 2 and [len(c) for c in calls] == [READAHEAD_MESSAGES, 6]


@pytest_twisted.ensureDeferred
async def test_deleted_message_is_not_served_from_the_read_ahead(server):
    for n in range(5):
        await server.deliver(body(n))
    got = await threads.deferToThread(retr_all, server.port, (2,))
    assert got == [PREFIX + body(0), None, PREFIX + body(2), PREFIX + body(3),
                   PREFIX + body(4)]
    assert [len(c) for c in server.extra[0]] == [4]     # the deleted one is not read


@pytest_twisted.ensureDeferred
async def test_read_ahead_stops_at_one_mebibyte_of_messages(server):
    big = 500_000                     # about 400 KB each: two fit in 1 MiB
    for n in range(4):
        await server.deliver(body(n, big))
    got = await threads.deferToThread(retr_all, server.port)
    assert got == [PREFIX + body(n, big) for n in range(4)]
    assert [len(c) for c in server.extra[0]] == [2, 2]


@pytest_twisted.ensureDeferred
async def test_read_ahead_replies_go_to_the_socket_without_the_reactors_writer_turn(
        server, monkeypatch):
    """Over plain TCP, LIST and each RETR answered from the read-ahead are sent with
    one send on the socket, never registered with the reactor for writing."""
    count = 20
    for n in range(count):
        await server.deliver(body(n))
    queued = []                      # what each writer registration had to send
    original = tcp.Server.startWriting

    def counting(transport):
        queued.append(b"".join([transport.dataBuffer, *transport._tempDataBuffer]))
        return original(transport)

    monkeypatch.setattr(tcp.Server, "startWriting", counting)

    def session():
        c = poplib.POP3("127.0.0.1", server.port, timeout=10)
        c.user(USER)
        c.pass_(PASSWORD)
        listed = c.list()[1]
        got = [b"\r\n".join(c.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
        c.quit()
        return listed, got

    listed, got = await threads.deferToThread(session)
    assert len(listed) == count and got == [PREFIX + body(n) for n in range(count)]
    # The greeting, USER, PASS and QUIT replies take the reactor's writer turn (and
    # RETR 1 when it came before the first batch landed); LIST and the RETRs read
    # ahead never do.
    through_reactor = b"".join(queued)
    assert b"+OK 20 messages" not in through_reactor
    assert [n for n in range(count) if b"Subject: m%d\r\n" % n in through_reactor] in (
        [], [0])
