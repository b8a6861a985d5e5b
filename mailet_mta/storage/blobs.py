"""The blob store: where message bodies live.

A message up to ``inline_limit`` octets is kept in the ``blobs`` table itself (one
database write, no extra fsync). A larger one is streamed to a file under
``<data_dir>/blobs/`` while it arrives, fsynced, and then recorded in the table with
``data`` NULL (as ``blobs/<last two characters of the id>/<id>``). Writers never hold a
large message whole in memory.

Blobs are shared: the spool row, each mailbox message made from it and any repository
copy refer to the same blob id. :meth:`BlobStore.sweep` removes blobs that nothing
refers to any more.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.engine import Connection
from twisted.internet import defer, threads

from ..mail import MessageSource, new_mail_name
from . import schema
from .db import execute
from .private_files import make_private_dir, open_private

CHUNK = 64 * 1024
_INSERT_BLOB = insert(schema.blobs)


@dataclass
class BlobRef:
    """A finished blob: its id and size, and its bytes when it is kept inline."""

    id: str
    size: int
    data: bytes | None = None


class BlobWriter:
    """Collects a message as it arrives; spills to a file past the inline limit.

    ``write`` may be called from the reactor thread (it appends to memory or to an
    unsynced file: no fsync). ``finish`` fsyncs in a thread and returns a BlobRef.

    A failed write (the disk is full) never raises into the caller, which is in the
    middle of reading DATA: the partial file is removed at once, the rest of the body
    is only counted, and ``finish`` fails with that OSError (``errno`` ENOSPC), so the
    client gets its answer when the data ends.
    """

    def __init__(self, store: BlobStore):
        self._store = store
        self._chunks: list[bytes] = []
        self._size = 0
        self._file = None
        self._tmp: Path | None = None
        self.error: OSError | None = None
        self.id = new_mail_name()

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self.error is not None:
            return
        try:
            if self._file is None:
                self._chunks.append(data)
                if self._size > self._store.inline_limit:
                    self._spill()
            else:
                self._file.write(data)
        except OSError as exc:
            self.error = exc
            self._discard()

    def _spill(self) -> None:
        self._tmp = self._store.tmp_dir / self.id
        self._file = open_private(self._tmp, buffering=CHUNK)
        for chunk in self._chunks:
            self._file.write(chunk)
        self._chunks = []

    def finish_sync(self) -> BlobRef:
        """Make the blob durable (blocking) and return its reference."""
        if self.error is not None:
            raise self.error
        if self._file is None:
            return BlobRef(self.id, self._size, b"".join(self._chunks))
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            final = self._store.path_for(self.id)
            make_private_dir(final.parent)
            os.replace(self._tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            self.error = exc
            self._discard()
            raise
        self._file = None
        return BlobRef(self.id, self._size, None)

    def finish(self) -> defer.Deferred:
        """Deferred → BlobRef; inline blobs return at once, files are fsynced in a thread."""
        if self._file is None or self.error is not None:
            return defer.maybeDeferred(self.finish_sync)
        return threads.deferToThread(self.finish_sync)

    def abort(self) -> None:
        """Throw away what was written (connection lost, size exceeded…)."""
        self._chunks = []
        self._discard()

    def _discard(self) -> None:
        """Close and remove the temporary file; never raises (the disk may be full)."""
        self._chunks = []
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass      # the buffered tail could not be flushed: it is thrown away
            try:
                os.unlink(self._tmp)
            except OSError:
                pass


def blob_dir(config) -> Path:
    """Where large message files live: storage.blob_dir or <data_dir>/blobs."""
    return Path(config.storage.blob_dir or Path(config.storage.data_dir) / "blobs")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blob files under ``root`` plus the ``blobs`` table."""

    def __init__(self, root: str | os.PathLike, inline_limit: int = 65536):
        self.root = Path(root)
        self.inline_limit = inline_limit
        self.tmp_dir = self.root / "tmp"
        make_private_dir(self.tmp_dir)

    def path_for(self, blob_id: str) -> Path:
        return self.root / blob_id[-2:] / blob_id

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def from_bytes(self, data: bytes) -> BlobRef:
        """A blob for bytes already in memory (blocking when it spills to a file)."""
        w = self.writer()
        w.write(data)
        return w.finish_sync()

    # -- the table -------------------------------------------------------------------
    @staticmethod
    def row_statement(ref: BlobRef) -> tuple:
        """(statement, parameters) that record ``ref`` in the blobs table; the
        database writer groups equal statements of a batch into one executemany."""
        return (_INSERT_BLOB, {"id": ref.id, "size": ref.size, "data": ref.data,
                               "created": time.time()})

    @staticmethod
    def insert_row(conn: Connection, ref: BlobRef) -> None:
        """Record ``ref`` in the blobs table (inside the caller's transaction)."""
        execute(conn, *BlobStore.row_statement(ref))

    def source(self, blob_id: str, size: int, data: bytes | None) -> MessageSource:
        """A MessageSource for a blob row: in memory if inline, else read from its file."""
        if data is not None:
            return MessageSource(data, blob_id=blob_id)
        path = self.path_for(blob_id)
        return MessageSource(size=size, loader=path.read_bytes,
                             opener=lambda: open(path, "rb"), blob_id=blob_id)

    def load_sources(self, conn: Connection, blob_ids) -> dict[str, MessageSource]:
        """MessageSources for many blob ids in one query."""
        ids = list(set(blob_ids))
        out: dict[str, MessageSource] = {}
        for start in range(0, len(ids), 500):
            rows = conn.execute(select(schema.blobs.c.id, schema.blobs.c.size,
                                       schema.blobs.c.data)
                                .where(schema.blobs.c.id.in_(ids[start:start + 500])))
            for bid, size, data in rows:
                out[bid] = self.source(bid, size, data)
        return out

    def sweep(self, conn: Connection, older_than: float = 3600.0) -> int:
        """Delete blobs no table refers to (and their files); returns how many."""
        cutoff = time.time() - older_than
        b = schema.blobs
        refs = [schema.spool.c.blob_id, schema.messages.c.blob_id,
                schema.repository_mails.c.blob_id, schema.outgoing.c.blob_id]
        cond = b.c.created < cutoff
        for col in refs:
            cond = cond & ~exists().where(col == b.c.id)
        doomed = conn.execute(select(b.c.id, b.c.data.is_(None)).where(cond)).all()
        for start in range(0, len(doomed), 500):
            chunk = doomed[start:start + 500]
            conn.execute(delete(b).where(b.c.id.in_([i for i, _ in chunk])))
        for blob_id, is_file in doomed:
            if is_file:
                try:
                    os.unlink(self.path_for(blob_id))
                except FileNotFoundError:
                    pass
        return len(doomed)

    def remove_leftovers(self, conn: Connection, older_than: float = 0.0) -> int:
        """Remove what interrupted writes left behind; returns how many files.

        Two kinds, both unreachable: temporary files under ``tmp/`` (a DATA cut off by a
        crash) and blob files without a row (a crash between the rename of the file
        and the commit of its row, or between a sweep's delete and its unlink). Only
        files last changed ``older_than`` seconds ago are touched, so that other
        processes sharing this directory can finish what they are writing.
        """
        cutoff = time.time() - older_than
        removed = sum(_unlink_if_old(path, cutoff) for path in _files(self.tmp_dir))
        for sub in sorted(self.root.iterdir()):
            if sub.name == "tmp" or len(sub.name) != 2 or not sub.is_dir():
                continue
            found = {f.name: f for f in _files(sub) if f.name.endswith(sub.name)}
            known: set[str] = set()
            names = list(found)
            for start in range(0, len(names), 500):
                known.update(conn.execute(select(schema.blobs.c.id).where(
                    schema.blobs.c.id.in_(names[start:start + 500]))).scalars())
            removed += sum(_unlink_if_old(path, cutoff)
                           for name, path in found.items() if name not in known)
        return removed


def _files(directory: Path):
    try:
        return [entry for entry in directory.iterdir() if entry.is_file()]
    except FileNotFoundError:
        return []


def _unlink_if_old(path: Path, cutoff: float) -> int:
    try:
        if path.stat().st_mtime <= cutoff:
            path.unlink()
            return 1
    except FileNotFoundError:
        pass
    return 0
