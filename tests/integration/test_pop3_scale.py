"""POP3 on a big mailbox and on PostgreSQL."""

from __future__ import annotations

import poplib
import socket
import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import threads

from mailet_mta.storage import mailboxes, schema
from mailet_mta.storage.blobs import BlobStore
from tests.integration.pop3_server_fixture import PASSWORD, USER, prepare_database, start_server


def _fill(db, blobs, count: int) -> int:
    """Insert ``count`` messages sharing one blob, in one transaction (bulk)."""
    ref = blobs.from_bytes(b"Subject: bulk\r\n\r\nsame body\r\n")
    with db.transaction() as conn:
        BlobStore.insert_row(conn, ref)
        box = mailboxes.get_or_create_mailbox(conn, USER)
        now = time.time()
        conn.execute(schema.messages.insert(), [
            {"mailbox_id": box, "uid": i + 1, "uidl": uuid.uuid4().hex, "blob_id": ref.id,
             "prefix": b"", "size": ref.size, "internal_date": now, "flags": "",
             "deleted": False} for i in range(count)])
        conn.execute(schema.mailboxes.update().where(schema.mailboxes.c.id == box)
                     .values(uid_next=count + 1, message_count=count))
    return ref.size


@pytest.mark.slow          # loads a 100,000-message mailbox for seconds
@pytest_twisted.ensureDeferred
async def test_100k_message_mailbox_answers_stat_and_list_fast(tmp_path):
    url = "sqlite:///" + str(tmp_path / "big.sqlite3")
    prepare_database(url)
    srv = await start_server(url, tmp_path / "blobs")
    try:
        size = await threads.deferToThread(_fill, srv.db, srv.blobs, 100_000)

        def session():
            c = poplib.POP3("127.0.0.1", srv.port, timeout=30)
            c.user(USER)
            t0 = time.monotonic()
            c.pass_(PASSWORD)
            t1 = time.monotonic()
            stat = c.stat()
            t2 = time.monotonic()
            listing = c.list()[1]
            t3 = time.monotonic()
            uidl = c.uidl()[1]
            t4 = time.monotonic()
            c.quit()
            return stat, len(listing), len(uidl), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)

        stat, listed, uidls, (login, stat_t, list_t, uidl_t) = \
            await threads.deferToThread(session)
        assert stat == (100_000, 100_000 * size)
        assert listed == uidls == 100_000
        assert login < 5.0, f"login of a 100k mailbox took {login:.2f}s"
        assert stat_t < 0.1
        assert list_t < 3.0 and uidl_t < 3.0, (list_t, uidl_t)
    finally:
        await srv.service.stopService()
        await srv.db.stop()


@pytest_twisted.ensureDeferred
async def test_session_with_deletion_on_each_database(db_url, tmp_path):
    prepare_database(db_url)
    srv = await start_server(db_url, tmp_path / "blobs")
    try:
        for i in range(3):
            await srv.deliver(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))

        def session(delete):
            c = poplib.POP3("127.0.0.1", srv.port, timeout=10)
            c.user(USER)
            c.pass_(PASSWORD)
            uidl = c.uidl()[1]
            body = c.retr(2)[1]
            if delete:
                c.dele(2)
            c.quit()
            return uidl, body

        uidl, body = await threads.deferToThread(session, True)
        assert body[-1] == b"body 1"
        after, body = await threads.deferToThread(session, False)
        assert after == [b"1 " + uidl[0].split()[1], b"2 " + uidl[2].split()[1]]
        assert body[-1] == b"body 2"
    finally:
        await srv.service.stopService()
        await srv.db.stop()



def _answers(port: int, commands: list[str]) -> list[bytes]:
    """Log in with a raw socket, send ``commands`` one at a time and QUIT; → the exact
    bytes of each command's answer (a multi-line one up to and with its '.' line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def answer(multi: bool) -> bytes:
            lines = [reader.readline()]
            while multi and lines[0].startswith(b"+OK") and lines[-1] != b".\r\n":
                lines.append(reader.readline())
            return b"".join(lines)

        answer(False)
        out = []
        for line in [f"USER {USER}", f"PASS {PASSWORD}", *commands, "QUIT"]:
            sock.sendall(line.encode() + b"\r\n")
            out.append(answer(line in ("LIST", "UIDL") or line.startswith("RETR ")))
    return out[2:-1]


@pytest_twisted.ensureDeferred
async def test_list_uidl_after_dele_and_rset_and_retr_octets_on_each_database(db_url,
                                                                             tmp_path):
    prepare_database(db_url)
    srv = await start_server(db_url, tmp_path / "blobs")
    try:
        bodies = [b"Subject: %d\r\n\r\n" % i + b"line of text\r\n" * (i * 40)
                  for i in range(1, 5)]
        for body in bodies:
            await srv.deliver(body)
        sizes = [len(b"Delivered-To: bob@example.com\r\n") + len(b) for b in bodies]
        commands = ["UIDL", "DELE 1", "DELE 3", "LIST", "UIDL", "LIST 3", "RSET", "LIST",
                    *(f"RETR {n}" for n in range(1, 5))]
        uidl, _, _, listed, uidl_kept, list_3, _, full, *retrs = \
            await threads.deferToThread(_answers, srv.port, commands)
        ids = [line.split()[1] for line in uidl.split(b"\r\n")[1:-2]]
        assert listed == b"+OK 2 messages (%d octets)\r\n2 %d\r\n4 %d\r\n.\r\n" % (
            sizes[1] + sizes[3], sizes[1], sizes[3])
        assert uidl_kept == (b"+OK unique-id listing follows\r\n2 %s\r\n4 %s\r\n.\r\n"
                             % (ids[1], ids[3]))
        assert list_3.startswith(b"-ERR no such message: 3")
        assert full == (b"+OK 4 messages (%d octets)\r\n" % sum(sizes)
                        + b"".join(b"%d %d\r\n" % (n, size)
                                   for n, size in enumerate(sizes, 1)) + b".\r\n")
        for size, retr in zip(sizes, retrs):
            head, _, message = retr.partition(b"\r\n")
            assert head == b"+OK %d octets" % size
            assert len(message) - len(b".\r\n") == size
    finally:
        await srv.service.stopService()
        await srv.db.stop()
