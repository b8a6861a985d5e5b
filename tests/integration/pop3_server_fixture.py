"""A real POP3 server for integration tests: database, blob store, listener on 127.0.0.1:0."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import pytest_twisted

from mailet_mta.config.model import POP3ServerConfig, TLSConfig
from mailet_mta.pop3 import make_pop3_service
from mailet_mta.retrieval import DatabaseMailStore
from mailet_mta.storage import domains, mailboxes, passwords, users
from mailet_mta.storage.authenticator import Authenticator
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database

USER, PASSWORD = "bob@example.com", "correct horse"


@dataclass
class Server:
    db: Database
    blobs: BlobStore
    backend: DatabaseMailStore
    service: object
    port: int
    extra: list = field(default_factory=list)

    async def deliver(self, body: bytes, user: str = USER,
                      prefix: bytes = b"Delivered-To: bob@example.com\r\n") -> int:
        ref = self.blobs.from_bytes(body)

        def write(conn):
            BlobStore.insert_row(conn, ref)
            return mailboxes.store_message(conn, user, "INBOX", ref.id, prefix, ref.size)

        return await self.db.write(write)

    async def deliver_blob(self, ref, user: str = USER, prefix: bytes = b"") -> int:
        def write(conn):
            BlobStore.insert_row(conn, ref)
            return mailboxes.store_message(conn, user, "INBOX", ref.id, prefix, ref.size)

        return await self.db.write(write)


@cache
def password_hash() -> str:
    """The hash of PASSWORD, made once: argon2 at production cost is no test's subject here."""
    return passwords.hash_password(PASSWORD)


def prepare_database(url: str) -> None:
    db = Database(url)
    db.upgrade()
    with db.transaction() as conn:
        domains.add_domain(conn, "example.com")
        users.add_user(conn, USER, password_hash())
        users.add_user(conn, "amy@example.com", password_hash())
    db.engine.dispose()


async def start_server(url: str, blob_dir, node: str = "node-a", tls_dir=None,
                       implicit_tls: bool = False, require_ssl: bool = False) -> Server:
    db = Database(url)
    db.start()
    blobs = BlobStore(blob_dir, inline_limit=4096)
    auth = Authenticator(db, failure_delay=0.05)
    backend = DatabaseMailStore(db, blobs, auth, node)
    tls = None
    if tls_dir is not None:
        from tests.support.certs import make_cert

        cert, key = make_cert(tls_dir)
        tls = TLSConfig(certificate=str(cert), private_key=str(key))
    config = POP3ServerConfig(listen="tcp:0:interface=127.0.0.1", tls=tls,
                              implicit_tls=implicit_tls, require_ssl=require_ssl,
                              connection_timeout=30)
    service = make_pop3_service(config, backend)
    service.startService()
    await service.listening
    return Server(db, blobs, backend, service, service.port)


def stop_server(server: Server) -> None:
    pytest_twisted.blockon(server.service.stopService())
    pytest_twisted.blockon(server.db.stop())
