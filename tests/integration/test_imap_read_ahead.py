"""FETCH's read-ahead of small whole messages, over the real store (SQLite and
PostgreSQL): sessions of the IMAP server built by its factory, on the reactor, with
their render threads; commands go in through ``dataReceived``, answers come out of the
transport.

A client that fetches message after message whole (``FETCH n BODY.PEEK[]``) gets the
next ones from memory, answered on the spot; the read-ahead is bounded in octets per
session, never outlives a change another session committed (an expunge is not served
from it), and ``\\Seen`` is set by ``BODY[]`` and not by ``BODY.PEEK[]`` either way.
"""

from __future__ import annotations

import re

import pytest
import pytest_twisted
from twisted.internet.testing import StringTransport

from mailet_mta.config.model import IMAPServerConfig
from mailet_mta.imap.factory import IMAPServerFactory
from mailet_mta.imap.read_ahead import READ_AHEAD_MESSAGE, READ_AHEAD_OCTETS
from tests.integration.pop3_server_fixture import PASSWORD, USER
from tests.integration.test_retrieval_store import deliver, store, until  # noqa: F401


def body(n: int, octets: int = 2000) -> bytes:
    head = b"Subject: message %d\r\n\r\n" % n
    line = b"%d " % n * 30 + b"\r\n"
    return head + line * (octets // len(line))


class Session:
    """One IMAP session of ``factory`` on a StringTransport."""

    def __init__(self, factory):
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.n = 0

    def send(self, line: str) -> str:
        self.n += 1
        tag = f"t{self.n}"
        self.transport.clear()
        self.proto.dataReceived(f"{tag} {line}\r\n".encode())
        return tag

    def answered(self, tag: str) -> bool:
        return re.search(rb"(^|\n)%s (OK|NO|BAD)" % tag.encode(),
                         self.transport.value()) is not None

    async def cmd(self, line: str) -> bytes:
        tag = self.send(line)
        await until(lambda: self.answered(tag))
        out = self.transport.value()
        assert re.search(rb"(^|\n)%s OK" % tag.encode(), out), out
        return out

    def on_the_spot(self, line: str) -> bytes:
        """The answer of a command that needs no store read: complete as soon as
        ``dataReceived`` returns, before the reactor runs again."""
        tag = self.send(line)
        out = self.transport.value()
        assert self.answered(tag), (line, out)
        return out

    @property
    def read_ahead(self):
        return self.proto._read_ahead


@pytest.fixture
def factory(store):  # noqa: F811
    made = IMAPServerFactory(IMAPServerConfig(), store)
    yield made
    made.stop_workers()


async def selected(factory) -> Session:
    s = Session(factory)
    await s.cmd(f'LOGIN {USER} "{PASSWORD}"')
    await s.cmd("SELECT INBOX")
    return s


def literal_of(out: bytes) -> bytes:
    m = re.search(rb"\{(\d+)\}\r\n", out)
    assert m, out
    return out[m.end():m.end() + int(m.group(1))]


async def reading_ahead(factory) -> Session:
    """A session that fetched messages 1 and 2 whole: those after 2 are read ahead."""
    s = await selected(factory)
    await s.cmd("FETCH 1 BODY.PEEK[]")
    await s.cmd("FETCH 2 BODY.PEEK[]")
    return s


async def fill(store, count: int, octets: int = 2000) -> list[bytes]:  # noqa: F811
    bodies = [body(n, octets) for n in range(1, count + 1)]
    for b in bodies:
        await deliver(store, b)
    return bodies


@pytest_twisted.ensureDeferred
async def test_fetching_message_after_message_is_answered_from_the_read_ahead(store, factory):  # noqa: F811
    bodies = await fill(store, 12)
    s = await selected(factory)
    for n in (1, 2):
        assert literal_of(await s.cmd(f"FETCH {n} BODY.PEEK[]")) == bodies[n - 1]
    # message 2 continued message 1: 3..12 were read with it
    assert len(s.read_ahead) == 10
    for n in range(3, 13):
        out = s.on_the_spot(f"FETCH {n} (UID RFC822.SIZE BODY.PEEK[])")
        assert out.startswith(b"* %d FETCH (UID %d RFC822.SIZE %d BODY[] {%d}\r\n"
                              % (n, n, len(bodies[n - 1]), len(bodies[n - 1])))
        assert literal_of(out) == bodies[n - 1]
    assert len(s.read_ahead) == 0 and s.read_ahead.held == 0
    # BODY.PEEK[] sets no flag, from the store or from memory
    snapshot = await store.select(USER, "INBOX")
    assert set(snapshot.flags) == {frozenset()}


@pytest_twisted.ensureDeferred
async def test_a_fetch_that_does_not_continue_the_last_one_reads_nothing_ahead(store, factory):  # noqa: F811
    await fill(store, 6)
    s = await selected(factory)
    for n in (1, 4, 2, 6):
        await s.cmd(f"FETCH {n} BODY.PEEK[]")
        assert len(s.read_ahead) == 0


@pytest_twisted.ensureDeferred
async def test_the_read_ahead_is_bounded_in_octets_per_session(store, factory):  # noqa: F811
    octets = 40_000
    await fill(store, 20, octets)               # 800 KB in the folder
    s = await selected(factory)
    await s.cmd("FETCH 1 BODY.PEEK[]")
    await s.cmd("FETCH 2 BODY.PEEK[]")
    sizes = s.proto.selected.sizes
    fits = 0
    while sum(sizes[2:3 + fits]) <= READ_AHEAD_OCTETS:
        fits += 1
    assert 0 < fits < 18
    assert len(s.read_ahead) == fits and s.read_ahead.held == sum(sizes[2:2 + fits])
    # the run goes on from the store once what was read ahead is used up
    for n in range(3, 3 + len(s.read_ahead)):
        s.on_the_spot(f"FETCH {n} BODY.PEEK[]")
    await s.cmd(f"FETCH {n + 1} BODY.PEEK[]")
    assert 0 < s.read_ahead.held <= READ_AHEAD_OCTETS


@pytest_twisted.ensureDeferred
async def test_large_messages_are_never_read_ahead(store, factory):  # noqa: F811
    await fill(store, 4, READ_AHEAD_MESSAGE + 1000)
    s = await selected(factory)
    await s.cmd("FETCH 1 BODY.PEEK[]")
    await s.cmd("FETCH 2 BODY.PEEK[]")
    assert len(s.read_ahead) == 0


@pytest_twisted.ensureDeferred
async def test_a_message_another_session_expunged_is_not_served_from_it(store, factory):  # noqa: F811
    await fill(store, 6)
    a = await reading_ahead(factory)
    assert len(a.read_ahead) == 4
    b = await selected(factory)
    await b.cmd("STORE 3 +FLAGS.SILENT (\\Deleted)")
    await b.cmd("EXPUNGE")
    # at once after b's OK, before a could have been told: message 3 is gone for a
    out = await a.cmd("FETCH 3 BODY.PEEK[]")
    assert b"BODY[]" not in out and b"* 3 FETCH" not in out
    await a.cmd("NOOP")                         # told now: 3 is expunged
    assert a.proto.selected.uids.tolist() == [1, 2, 4, 5, 6]


@pytest_twisted.ensureDeferred
async def test_flags_another_session_changed_are_answered_not_stale(store, factory):  # noqa: F811
    await fill(store, 6)
    a = await reading_ahead(factory)
    b = await selected(factory)
    await b.cmd("STORE 3 +FLAGS.SILENT (\\Flagged)")
    await until(lambda: a.proto.selected.dirty)     # the store's notification
    tag = a.send("FETCH 3 (FLAGS BODY.PEEK[])")
    assert not a.answered(tag)                      # not from memory: the store first
    await until(lambda: a.answered(tag))
    out = a.transport.value()
    assert rb"\Flagged" in out
    assert literal_of(out) == body(3)


@pytest_twisted.ensureDeferred
async def test_body_from_the_read_ahead_sets_seen_and_body_peek_does_not(store, factory):  # noqa: F811
    bodies = await fill(store, 6)
    s = await reading_ahead(factory)
    assert len(s.read_ahead) == 4
    out = await s.cmd("FETCH 3 BODY[]")             # \Seen is stored first
    assert literal_of(out) == bodies[2]
    assert b"FLAGS (\\Seen)" in out
    await s.cmd("NOOP")                             # up to date with the store
    s.on_the_spot("FETCH 4 BODY.PEEK[]")
    out = await s.cmd("FETCH 3:4 FLAGS")
    assert b"* 3 FETCH (FLAGS (\\Seen))\r\n* 4 FETCH (FLAGS ())" in out
    snapshot = await store.select(USER, "INBOX")
    assert [bool(f) for f in snapshot.flags] == [False, False, True, False, False, False]
    # a message already \Seen: BODY[] changes nothing and is answered from memory
    await s.cmd("STORE 6 +FLAGS.SILENT (\\Seen)")
    await s.cmd("NOOP")
    s.on_the_spot("FETCH 5 BODY.PEEK[]")
    out = s.on_the_spot("FETCH 6 BODY[]")
    assert literal_of(out) == bodies[5] and b"FLAGS" not in out


@pytest_twisted.ensureDeferred
async def test_headers_of_a_batch_are_read_in_one_store_read_as_one_by_one(store):  # noqa: F811
    big = b"Subject: big\r\nFrom: a@example.com\r\n\r\n" + b"body line\r\n" * 5000
    await deliver(store, big, prefix=b"Return-Path: <a@example.com>\r\n")   # a blob file
    await deliver(store, b"Subject: small\r\n\r\nx\r\n")                      # inline
    await deliver(store, b"\r\nno header at all\r\n\r\nx\r\n")
    ids = list((await store.select(USER, "INBOX")).ids)
    for limit in (10, 10_000):
        one_by_one = {mid: await store.read_headers(mid, limit) for mid in ids}
        assert await store.read_headers_of([*ids, 999_999], limit) == one_by_one
    assert (await store.read_headers_of(ids, 10_000))[ids[0]] == (
        b"Return-Path: <a@example.com>\r\nSubject: big\r\nFrom: a@example.com\r\n\r\n")


@pytest_twisted.ensureDeferred
async def test_fetch_of_header_fields_answers_every_message_of_the_batch(store, factory):  # noqa: F811
    await fill(store, 5)
    s = await selected(factory)
    out = await s.cmd("FETCH 1:5 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    for n in range(1, 6):
        field = b"Subject: message %d\r\n\r\n" % n
        assert b"* %d FETCH (UID %d BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n%s)" % (
            n, n, len(field), field) in out
    assert set((await store.select(USER, "INBOX")).flags) == {frozenset()}
