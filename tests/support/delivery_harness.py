"""A real outgoing queue for tests: database, blob store, resolver with a static table,
and an ``inject`` that collects the mails the queue sends back."""

from __future__ import annotations

import time

from twisted.internet import defer, reactor, task

from mailet_mta.address import MailAddress
from mailet_mta.config.model import DNSConfig
from mailet_mta.delivery import queue_store
from mailet_mta.delivery.resolver import Resolver
from mailet_mta.delivery.service import OutgoingQueueService
from mailet_mta.mail import Mail
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database


def make_message(subject: str = "test", body: str = "Hello.\r\n", size: int = 0) -> bytes:
    head = (f"From: alice@origin.test\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@origin.test>\r\n\r\n").encode()
    data = head + body.encode()
    if size > len(data):
        line = b"x" * 76 + b"\r\n"
        data += line * ((size - len(data)) // len(line) + 1)
    return data


class DeliveryHarness:
    """Builds the service; ``enqueue`` a mail, ``until`` a condition, ``rows`` to inspect."""

    def __init__(self, tmp_path, hosts: dict[str, list[str]], url: str | None = None,
                 clock=None, dns_servers: list[str] | None = None, **service_kw):
        self.db = Database(url or "sqlite:///" + str(tmp_path / "q.sqlite3"))
        self.db.upgrade()
        self.db.start()
        self.blobs = BlobStore(tmp_path / "blobs", inline_limit=service_kw.pop(
            "inline_limit", 65536))
        self.resolver = Resolver(DNSConfig(hosts=hosts, servers=dns_servers or ["127.0.0.1:1"],
                                           timeout=1))
        self.injected: list[Mail] = []
        self.clock = clock
        service_kw.setdefault("poll_interval", 0.2)
        self.service = OutgoingQueueService(self.db, self.blobs, self.resolver, self._inject,
                                            "node-1", clock=clock, reactor=reactor,
                                            helo_name="relay.test", **service_kw)

    def _inject(self, mail: Mail):
        self.injected.append(mail)
        return defer.succeed(None)

    def start(self):
        self.service.startService()

    async def stop(self):
        if self.service.running:
            await self.service.stopService()
        await self.db.stop()

    async def enqueue(self, sender: str | None, recipients: list[str], data: bytes,
                      options: dict | None = None, attributes: dict | None = None,
                      now: float | None = None) -> list[int]:
        ref = self.blobs.from_bytes(data)
        mail = Mail(sender=MailAddress.parse(sender) if sender else None,
                    recipients=[MailAddress.parse(r) for r in recipients], message=data,
                    attributes=attributes or {})
        if now is None and self.clock is not None:
            now = self.clock.seconds()

        def write(conn):
            BlobStore.insert_row(conn, ref)
            return queue_store.enqueue(conn, mail, ref.id, "outgoing", options or {}, now=now)

        ids = await self.db.write(write)
        self.service.wake()
        return ids

    def rows(self) -> defer.Deferred:
        return self.db.read(queue_store.list_entries)

    async def until(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Wait (in real time, nudging a fake clock) until ``predicate()`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if isinstance(value, defer.Deferred):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            if isinstance(self.clock, task.Clock):
                self.clock.advance(0)
            await task.deferLater(reactor, 0.02, lambda: None)

    async def settle(self, seconds: float = 0.3):
        """Let the service run for a moment of real time."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if isinstance(self.clock, task.Clock):
                self.clock.advance(0)
            await task.deferLater(reactor, 0.02, lambda: None)


def listen(factory, context=None):
    """Listen ``factory`` on 127.0.0.1:0; returns the port object and sets
    ``factory.address`` to ``"127.0.0.1:PORT"``."""
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    factory.address = f"127.0.0.1:{port.getHost().port}"
    return port
