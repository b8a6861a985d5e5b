"""How mails enter the spool: received, injected by the server, or sent by a mailet.

A mail's row (and its blob row) is committed by the database writer (group commit);
only then is the mail put on the :class:`RunQueue` **in memory** — the database is the
record, not the conveyor. A unit of work committed outside a spool run (a mailet's
own timer, an injected bounce) goes through :meth:`SpoolIntake.commit`, which hands
the mails it spooled to the queue and runs its after-commit callbacks.
"""

from __future__ import annotations

import time

from twisted.internet import defer
from twisted.logger import Logger

from ..mail import Mail
from ..storage.blobs import BlobRef, BlobStore
from ..storage.db import Database
from . import store
from .run_queue import RunQueue
from .unit_of_work import UnitOfWork

log = Logger(namespace="mailet_mta.spool")


class SpoolIntake:
    """Puts mails into the durable spool, then on the run queue."""

    def __init__(self, db: Database, blobs: BlobStore, queue: RunQueue, *,
                 node_name: str = "node", lease_seconds: float = 300.0):
        self.db = db
        self.blobs = blobs
        self.queue = queue
        self.node_name = node_name
        self.lease_seconds = lease_seconds

    def accept(self, mail: Mail, blob: BlobRef) -> defer.Deferred:
        """Spool a received mail durably; fires after the commit (then say 250)."""
        mail.source.blob_id = blob.id
        d = self.db.write_statements(store.accept_statements(
            mail, blob, self.node_name, time.time() + self.lease_seconds))
        d.addCallback(lambda _: self.queue.hand_over(mail))
        return d

    def inject(self, mail: Mail, delay: float = 0.0) -> defer.Deferred:
        """Spool a mail made by the server (bounce, re-injection) in ``mail.state``."""
        uow = UnitOfWork(self.blobs)
        self.spool_in(uow, mail, delay)
        return self.commit(uow)

    def spool_in(self, uow: UnitOfWork, mail: Mail, delay: float = 0.0) -> None:
        """Add ``mail`` as a new spool row to ``uow``; it runs after the commit."""
        blob_id = uow.blob_id_for(mail)
        if delay > 0:
            uow.add(store.insert_mail, mail, blob_id, None, None, time.time() + delay)
        else:
            uow.add(store.insert_mail, mail, blob_id, self.node_name,
                    time.time() + self.lease_seconds)
            uow.spooled.append(mail)

    def commit(self, uow: UnitOfWork) -> defer.Deferred:
        """Commit ``uow`` in a transaction of its own, then :meth:`after_commit`."""
        d = self.db.write(uow.commit)
        d.addCallback(lambda _: self.after_commit(uow))
        return d

    def after_commit(self, uow: UnitOfWork) -> None:
        """``uow`` is durable: run the mails it spooled and its callbacks."""
        for new in uow.spooled:
            self.queue.put(new)
        for callback in uow.after_commit:
            try:
                callback()
            except Exception:  # noqa: BLE001 - one callback does not stop the others
                log.failure("after-commit callback failed")
