"""What one processing run of a mail changes, committed in one transaction.

While a mail runs through the processors, mailets ask the context to store it in a
mailbox, keep it in a repository, queue it for remote delivery or spool a new mail.
None of that touches the database at once: each becomes an operation of the run's
UnitOfWork, committed together with the removal of the mail from the spool. A crash
before the commit leaves the mail in the spool with nothing of its run visible, so it
is simply run again: no mail is lost and none is delivered twice.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection

from ..mail import Mail
from ..storage.blobs import BlobStore, BlobWriter

current_uow: contextvars.ContextVar[UnitOfWork | None] = contextvars.ContextVar(
    "mailet_mta_current_uow", default=None)


class UnitOfWork:
    """The operations of one run, plus the blobs created for changed messages."""

    def __init__(self, blobs: BlobStore):
        self.blobs = blobs
        self.ops: list[tuple[Callable[..., Any], tuple]] = []
        # The statements doing what every op does (PostgreSQL), while each op has them.
        self._flight: list | None = []
        self._writers: list[BlobWriter] = []
        self.spooled: list[Mail] = []        # new spool rows to hand to the manager after commit
        self.after_commit: list[Callable[[], Any]] = []

    @property
    def empty(self) -> bool:
        return not (self.ops or self._writers)

    def add(self, fn: Callable[..., Any], *args, flight: list | None = None) -> None:
        """Run ``fn(conn, *args)`` in the commit transaction. ``flight``: statements
        that do the same on PostgreSQL without their results being read, each failing
        when it cannot (see ``BatchWriter.submit_background``)."""
        self.ops.append((fn, args))
        if flight is None or self._flight is None:
            self._flight = None
        else:
            self._flight.extend(flight)

    def flight(self) -> list | None:
        """The statements doing all of :meth:`commit` (PostgreSQL), or None when some
        op has none or a changed message's blob is still to be written."""
        return None if self._writers else self._flight

    def blob_id_for(self, mail: Mail) -> str:
        """The blob holding ``mail``'s current message, creating one if it changed."""
        source = mail.source
        if source.blob_id is None:
            writer = self.blobs.writer()
            writer.write(source.read())
            self._writers.append(writer)
            source.blob_id = writer.id
        return source.blob_id

    def commit(self, conn: Connection) -> None:
        """Apply everything (called on the database writer thread)."""
        if self._writers:
            self._refs = [w.finish_sync() for w in self._writers]
            self._writers = []
        for ref in getattr(self, "_refs", ()):
            self.blobs.insert_row(conn, ref)
        for fn, args in self.ops:
            fn(conn, *args)

    def abort(self) -> None:
        for writer in self._writers:
            writer.abort()
        self._writers = []

