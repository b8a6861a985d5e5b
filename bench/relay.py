"""Outbound relay throughput: the outgoing queue vs a plain smtplib loop.

Both send N messages of SIZE octets to an aiosmtpd sink (a separate process, so it does
not share the GIL with the sender) spread over 1 and 10 destination domains mapped to
the sink by the static hosts table. The queue runs with its defaults (20 connections in
all, 3 per destination, connections reused); the peer opens one smtplib connection per
destination and reuses it. Messages are queued before the clock starts; the time is
from the service's start until the last entry was delivered.

    python bench/relay.py [--messages 1000] [--size 10240] [--domains 1,10]
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import defer, reactor, task

from mailet_mta.address import MailAddress
from mailet_mta.config.model import DNSConfig
from mailet_mta.delivery import queue_store
from mailet_mta.delivery.resolver import Resolver
from mailet_mta.delivery.service import OutgoingQueueService
from mailet_mta.mail import Mail
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l",
                             f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the aiosmtpd sink did not start")


def message(i: int, size: int) -> bytes:
    head = (f"From: bench@origin.test\r\nTo: rcpt@dest.test\r\nSubject: bench {i}\r\n"
            f"Message-ID: <{i}.bench@origin.test>\r\n\r\n").encode()
    line = b"y" * 78 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def domains_for(count: int) -> list[str]:
    return [f"d{i}.bench.test" for i in range(count)]


async def run_queue(n: int, size: int, ndomains: int, port: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    db = Database("sqlite:///" + str(tmp / "q.sqlite3"))
    db.upgrade()
    db.start()
    blobs = BlobStore(tmp / "blobs")
    domains = domains_for(ndomains)
    resolver = Resolver(DNSConfig(hosts={d: [f"127.0.0.1:{port}"] for d in domains}))

    def fill(conn):
        for i in range(n):
            data = message(i, size)
            ref = blobs.from_bytes(data)
            BlobStore.insert_row(conn, ref)
            mail = Mail(sender=MailAddress.parse("bench@origin.test"),
                        recipients=[MailAddress.parse(f"rcpt{i}@{domains[i % ndomains]}")],
                        message=data)
            queue_store.enqueue(conn, mail, ref.id, "outgoing", {}, now=0.0)

    await db.write(fill)
    service = OutgoingQueueService(db, blobs, resolver, lambda m: defer.succeed(None),
                                   "bench", helo_name="bench.test", claim_batch=1000)
    start = time.perf_counter()
    service.startService()
    while service.delivered < n:
        await task.deferLater(reactor, 0.01, lambda: None)
    elapsed = time.perf_counter() - start
    await service.stopService()
    await db.stop()
    return elapsed


def run_smtplib(n: int, size: int, ndomains: int, port: int) -> float:
    domains = domains_for(ndomains)
    messages = [message(i, size) for i in range(n)]
    start = time.perf_counter()
    clients = {}
    for i, data in enumerate(messages):
        domain = domains[i % ndomains]
        client = clients.get(domain)
        if client is None:
            client = clients[domain] = smtplib.SMTP("127.0.0.1", port)
            client.ehlo("bench.test")
        client.sendmail("bench@origin.test", [f"rcpt{i}@{domain}"], data)
    for client in clients.values():
        client.quit()
    return time.perf_counter() - start


async def main(reactor_, args) -> None:
    proc, port = start_sink()
    rows = []
    try:
        for nd in args.domains:
            q = await run_queue(args.messages, args.size, nd, port)
            s = await defer.Deferred.fromCoroutine(_thread(run_smtplib, args.messages,
                                                           args.size, nd, port))
            rows.append((nd, args.messages / q, args.messages / s, q, s))
    finally:
        proc.terminate()
        proc.wait()
    print(f"\n{args.messages} messages of {args.size} octets to an aiosmtpd sink "
          f"(cpu count {os.cpu_count()})")
    print(f"{'domains':>8} | {'queue msg/s':>12} | {'smtplib msg/s':>13} | "
          f"{'queue s':>8} | {'smtplib s':>9}")
    print("-" * 62)
    for nd, qr, sr, q, s in rows:
        print(f"{nd:>8} | {qr:>12.0f} | {sr:>13.0f} | {q:>8.2f} | {s:>9.2f}")


async def _thread(fn, *a):
    from twisted.internet import threads

    return await threads.deferToThread(fn, *a)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--domains", type=lambda t: [int(x) for x in t.split(",")],
                        default=[1, 10])
    task.react(lambda r: defer.ensureDeferred(main(r, parser.parse_args())))
