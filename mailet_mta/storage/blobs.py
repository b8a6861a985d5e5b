"""The blob store: where message bodies live.

A message up to ``inline_limit`` octets is kept in the ``blobs`` table itself (one
database write, no extra fsync). A larger one is written to a file under
``<data_dir>/blobs/``, fsynced, and then recorded in the table with ``data`` NULL (as
``blobs/<last two characters of the id>/<id>``).

While a message arrives its pieces are held as they came (no copy, no join) up to
``held_per_writer`` octets, and up to ``held_limit`` octets for all writers of the
process together. A message that ends within those bounds is written by
:meth:`BlobWriter.finish` on a thread: the file is created, written with one
``writev`` of the held pieces and fsynced there, so the reactor thread never creates
a file or copies a body. A message that grows past them is spilled to a file at once
and streamed on as it arrives: writers never hold a large message whole in memory.

Blobs are shared: the spool row, each mailbox message made from it and any repository
copy refer to the same blob id. :meth:`BlobStore.sweep` removes blobs that nothing
refers to any more.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.engine import Connection
from twisted.internet import defer, threads

from ..mail import MessageSource, new_mail_name
from . import schema
from .db import execute
from .private_files import PRIVATE_FILE, make_private_dir, open_private

CHUNK = 64 * 1024
HELD_PER_WRITER = 512 * 1024      # octets one arriving message may hold in memory
HELD_LIMIT = 32 * 1024 * 1024     # octets all arriving messages may hold together
HEAD = 16 * 1024                  # octets of a file blob's start kept with its BlobRef
_IOV_MAX = 1024                   # pieces per writev (Linux's IOV_MAX)
_INSERT_BLOB = insert(schema.blobs)


@dataclass
class BlobRef:
    """A finished blob: its id and size, its bytes when it is kept inline, and for a
    file blob the first octets (``head``: up to ``HEAD``, where the header block
    usually is, so reading it needs no file)."""

    id: str
    size: int
    data: bytes | None = None
    head: bytes | None = None


class BlobWriter:
    """Collects a message as it arrives; see the module's docstring for where it goes.

    ``write`` may be called from the reactor thread (it keeps the piece, or appends to
    an unsynced file past the memory bounds: no fsync). ``finish`` writes and fsyncs in
    a thread and returns a BlobRef.

    A failed write (the disk is full) never raises into the caller, which is in the
    middle of reading DATA: the partial file is removed at once, the rest of the body
    is only counted, and ``finish`` fails with that OSError (``errno`` ENOSPC), so the
    client gets its answer when the data ends.
    """

    def __init__(self, store: BlobStore):
        self._store = store
        self._chunks: list[bytes] = []
        self._held = 0                # octets of _chunks (counted in the store's held)
        self._size = 0
        self._head: bytes | None = None
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
                self._held += len(data)
                store = self._store
                total = store.hold(len(data))
                if self._size > store.inline_limit and (
                        self._held > store.held_per_writer or total > store.held_limit):
                    self._spill()
            else:
                if len(self._head) < HEAD:     # _spill() kept what came before
                    self._head += data[:HEAD - len(self._head)]
                self._file.write(data)
        except OSError as exc:
            self.error = exc
            self._discard()

    def _spill(self) -> None:
        self._keep_head()
        self._tmp = self._store.tmp_dir / self.id
        self._file = open_private(self._tmp, buffering=CHUNK)
        chunks, self._chunks = self._chunks, []
        self._release()
        for chunk in chunks:
            self._file.write(chunk)

    def _keep_head(self) -> None:
        if self._head is None:
            head = bytearray()
            for chunk in self._chunks:
                head += chunk[:HEAD - len(head)]
                if len(head) >= HEAD:
                    break
            self._head = bytes(head)

    def _release(self) -> None:
        if self._held:
            self._store.release(self._held)
            self._held = 0

    def finish_sync(self) -> BlobRef:
        """Make the blob durable (blocking) and return its reference."""
        if self.error is not None:
            raise self.error
        if self._file is None and self._size <= self._store.inline_limit:
            data, self._chunks = b"".join(self._chunks), []
            self._release()
            return BlobRef(self.id, self._size, data)
        try:
            self._keep_head()
            if self._file is None:
                self._write_held()
            else:
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
        return BlobRef(self.id, self._size, None, self._head)

    def _write_held(self) -> None:
        """Write the held pieces to a new file with writev, fsync it, free them."""
        self._tmp = self._store.tmp_dir / self.id
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     PRIVATE_FILE)
        try:
            views = [memoryview(chunk) for chunk in self._chunks]
            while views:
                written = os.writev(fd, views[:_IOV_MAX])
                while written and written >= len(views[0]):
                    written -= len(views.pop(0))
                if written:
                    views[0] = views[0][written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._chunks = []
        self._release()

    def finish(self) -> defer.Deferred:
        """Deferred → BlobRef; inline blobs return at once, files are written and
        fsynced in a thread."""
        if self.error is not None or (self._file is None
                                      and self._size <= self._store.inline_limit):
            return defer.maybeDeferred(self.finish_sync)
        return threads.deferToThread(self.finish_sync)

    def abort(self) -> None:
        """Throw away what was written (connection lost, size exceeded…)."""
        self._discard()

    def _discard(self) -> None:
        """Drop the held pieces, close and remove the temporary file; never raises (the
        disk may be full)."""
        self._chunks = []
        self._release()
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass      # the buffered tail could not be flushed: it is thrown away
        if self._tmp is not None:
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

    def __init__(self, root: str | os.PathLike, inline_limit: int = 131072, *,
                 held_per_writer: int = HELD_PER_WRITER, held_limit: int = HELD_LIMIT):
        self.root = Path(root)
        self.inline_limit = inline_limit
        self.held_per_writer = max(held_per_writer, inline_limit)
        self.held_limit = held_limit
        self.held = 0                 # octets all writers hold in memory now
        self._held_lock = threading.Lock()
        self.tmp_dir = self.root / "tmp"
        make_private_dir(self.tmp_dir)

    def hold(self, octets: int) -> int:
        """Count ``octets`` more held in memory by a writer; → what all hold now (a
        writer past ``held_limit`` with it spills to a file, which releases them)."""
        with self._held_lock:
            self.held += octets
            return self.held

    def release(self, octets: int) -> None:
        """``octets`` a writer held are on disk or thrown away."""
        with self._held_lock:
            self.held -= octets

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

    def source(self, blob_id: str, size: int, data: bytes | None,
               head: bytes | None = None) -> MessageSource:
        """A MessageSource for a blob row: in memory if inline, else read from its file
        (``head``: its first octets, when known)."""
        if data is not None:
            return MessageSource(data, blob_id=blob_id)
        path = self.path_for(blob_id)
        return MessageSource(size=size, loader=path.read_bytes,
                             opener=lambda: open(path, "rb"), blob_id=blob_id, head=head)

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
