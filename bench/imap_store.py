"""The IMAP side of the mail store on SQLite: SELECT of a large folder, cold and warm.

    python bench/imap_store.py [--messages 100000] [--repeats 5] [--json FILE]

Fills one folder of one user with ``--messages`` rows (one blob shared by all, as
LocalDelivery shares one blob among recipients: SELECT never reads bodies; a third
of them ``\\Seen``, some ``\\Flagged``), then times through
:class:`~mailet_mta.retrieval.DatabaseMailStore` — reads on its reader threads, the
reactor running — in interleaved rounds, median of ``--repeats``:

- ``select cold``: the snapshot cache emptied first (every row read and turned into
  arrays);
- ``select warm``: the folder unchanged since the last select (one indexed row read);
- ``select after a change``: one new message and one flag change since the last
  select (the cached snapshot brought up to date from what changed);
- ``changes since (10 changes)``: what an IDLE/NOOP session asks after a change;
- the peer, in the same rounds: ``pop3 listing cold``, the POP3 login's read of the
  same folder (ids, uids, UIDLs, sizes rendered as LIST/UIDL lines).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import defer, task

from bench.common import machine, median, print_table, write_json
from mailet_mta.retrieval import DatabaseMailStore
from mailet_mta.storage import domains, mailboxes, schema, users
from mailet_mta.storage.authenticator import Authenticator
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database

USER = "bob@example.com"


def fill(db: Database, blobs: BlobStore, count: int) -> None:
    """``count`` messages in INBOX, one shared blob, inserted in batches."""
    body = b"Subject: bench\r\nFrom: a@example.org\r\n\r\n" + b"body line\r\n" * 200
    ref = blobs.from_bytes(body)
    with db.transaction() as conn:
        domains.add_domain(conn, "example.com")
        users.add_user(conn, USER, "x")
        BlobStore.insert_row(conn, ref)
        box = mailboxes.get_or_create_mailbox(conn, USER, "INBOX")
        flags = ["", "\\Seen", "", "\\Flagged \\Seen", ""]
        rows = []
        for uid in range(1, count + 1):
            rows.append({"mailbox_id": box, "uid": uid, "uidl": uuid.uuid4().hex,
                         "blob_id": ref.id, "prefix": b"Delivered-To: bob@example.com\r\n",
                         "size": ref.size + 31, "internal_date": 1.7e9 + uid,
                         "flags": flags[uid % 5], "deleted": False, "modseq": uid + 1})
            if len(rows) == 5000:
                conn.execute(schema.messages.insert(), rows)
                rows = []
        if rows:
            conn.execute(schema.messages.insert(), rows)
        conn.execute(schema.mailboxes.update().where(schema.mailboxes.c.id == box)
                     .values(uid_next=count + 1, highest_modseq=count + 1,
                             message_count=count))


async def timed(fn) -> float:
    started = time.perf_counter()
    await fn()
    return (time.perf_counter() - started) * 1000


async def run(reactor, args) -> None:
    work = Path(tempfile.mkdtemp(prefix="imap-store-bench-"))
    db = Database("sqlite:///" + str(work / "bench.sqlite3"))
    db.upgrade()
    blobs = BlobStore(work / "blobs")
    fill(db, blobs, args.messages)
    db.start()
    store = DatabaseMailStore(db, blobs, Authenticator(db), "bench")
    results: dict[str, list[float]] = {}

    def add(name: str, ms: float) -> None:
        results.setdefault(name, []).append(ms)

    async def cold():
        store.snapshots.clear()
        snap = await store.select(USER, "INBOX")
        assert len(snap) >= args.messages

    async def listing():
        store.listings.clear()
        await store.load_listing(USER, "INBOX")

    async def change():
        snap = await store.select(USER, "INBOX")
        await store.store_flags([snap.ids[len(snap) // 2]], {"$Bench"}, "add")
        append = store.begin_append(USER, "INBOX")
        append.write(b"Subject: new\r\n\r\nx\r\n")
        await append.finish((), None)

    try:
        await store.select(USER, "INBOX")                  # warm the reader threads
        for _round in range(args.repeats):
            add("select cold", await timed(cold))
            add("select warm", await timed(lambda: store.select(USER, "INBOX")))
            add("pop3 listing cold (peer)", await timed(listing))
            await change()
            add("select after a change", await timed(lambda: store.select(USER, "INBOX")))
            snap = await store.select(USER, "INBOX")
            since = snap.status.highest_modseq
            for _ in range(5):
                await change()
            add("changes since (10 changes)",
                await timed(lambda since=since: store.changes(USER, "INBOX", since)))
        snap = await store.select(USER, "INBOX")
        size = sum(len(a) * a.itemsize for a in (snap.ids, snap.uids, snap.sizes,
                                                 snap.dates, snap.modseqs))
        size += 8 * len(snap.flags)
    finally:
        await db.stop()
    peer = median(results["pop3 listing cold (peer)"])
    rows = [(name, f"{median(values):.1f}", f"{min(values):.1f}",
             f"{median(values) / peer:.2f}") for name, values in results.items()]
    print(f"{args.messages} messages, {args.repeats} interleaved rounds, {machine()}")
    print_table(["measure", "median ms", "best ms", "ratio to POP3 listing"], rows)
    print(f"snapshot arrays: {size / len(snap):.0f} octets per message")
    if args.json:
        write_json(args.json, {"messages": args.messages, "results": results,
                               "octets_per_message": size / len(snap)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
