"""The database: engine set-up, migrations, and the threads SQL runs on.

SQL never runs on the reactor thread. Reads go to a small thread pool
(:meth:`Database.read`). Writes go to **one writer thread** (:meth:`Database.write`)
that takes every write waiting when it becomes free and commits them together in one
transaction — one fsync for the whole batch (group commit). When a batch fails, its
writes are retried one by one, so one failing write fails only its own Deferred.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import create_engine, event, select, update
from sqlalchemy.engine import Connection, Engine
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from . import schema
from .private_files import create_private

log = Logger(namespace="mailet_mta.storage")

MAX_BATCH = 512
# How long a batch holding only background writes waits for a write someone is waiting
# on (an acceptance before its 250) to share its commit: one fsync instead of two.
LINGER = 0.005
# SQLite: the writer's own connection does not checkpoint the WAL when it commits (a
# checkpoint copies ~4 MB of pages into the database file and fsyncs it, and the 250s
# of that batch would wait for it); a thread of its own checkpoints after commits, at
# most every CHECKPOINT_EVERY seconds. Past WRITER_AUTOCHECKPOINT pages in the WAL
# (a checkpointer that fell behind) the writer checkpoints itself, as SQLite would.
CHECKPOINT_EVERY = 0.5
WRITER_AUTOCHECKPOINT = 16000


def default_url(data_dir: str | os.PathLike) -> str:
    return "sqlite:///" + str(Path(data_dir).resolve() / "mailet-mta.sqlite3")


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An Engine with the settings mailet-mta relies on for ``url``."""
    if url.startswith("sqlite"):
        _create_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size + 2, max_overflow=8)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")      # a committed batch survives power loss
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        # Let SQLAlchemy's "BEGIN" be a real BEGIN IMMEDIATE for writers: see begin_write.
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _create_sqlite_file(url: str) -> None:
    """Create the database file 0600 before SQLite does (it would follow the umask);
    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file."""
    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if path and path != ":memory:" and not path.startswith("file:") \
            and Path(path).parent.is_dir():
        create_private(path)


_DRIVER_SQL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class DriverSQL(NamedTuple):
    """A prebuilt statement compiled for one dialect: the driver's SQL text, its
    parameter names in positional order (None for a driver with named parameters) and
    the values of the literals the statement carries (``uid_next + 1``)."""

    sql: str
    positions: tuple | None
    fixed: dict

    def params(self, params: dict):
        """``params`` in the form the driver takes for :attr:`sql`."""
        if self.fixed:
            params = {**self.fixed, **params}
        return tuple([params[name] for name in self.positions]) if self.positions else params


def driver_sql(dialect, statement, columns: tuple | None = None) -> DriverSQL:
    """``statement`` (prebuilt, a module constant, no expanding parameters) compiled
    once per dialect. ``columns`` names the columns of an INSERT built without
    ``values()``."""
    compiled_here = _DRIVER_SQL.get(dialect)
    if compiled_here is None:
        compiled_here = _DRIVER_SQL.setdefault(dialect, {})
    key = (statement, columns)
    found = compiled_here.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect,
                                     column_keys=list(columns) if columns else None)
        fixed = {name: bind.value for name, bind in compiled.binds.items()
                 if not bind.required and bind.value is not None}
        found = compiled_here[key] = DriverSQL(compiled.string, compiled.positiontup, fixed)
    return found


def _prepared(conn: Connection, statement, params) -> DriverSQL:
    """:func:`driver_sql` of ``statement`` on ``conn`` for ``params`` (a dict, or the
    first row of an executemany: an INSERT takes its columns from the keys)."""
    return driver_sql(conn.dialect, statement, tuple(params) if statement.is_insert else None)


def _cursor(conn: Connection, statement, params: dict):
    """A DBAPI cursor of ``conn`` that has executed ``statement`` (the caller closes it)."""
    prepared = _prepared(conn, statement, params)
    cursor = conn.connection.cursor()
    cursor.execute(prepared.sql, prepared.params(params))
    return cursor


def execute(conn: Connection, statement, params: dict) -> int:
    """Execute a prebuilt Core ``statement`` on the DBAPI cursor of ``conn``; → rowcount.

    For the statements every mail runs (spool rows, blob rows, mailbox rows):
    SQLAlchemy's per-call work (cache key, bind and result processing) costs several
    times what the driver does. Parameters must be plain ``str``, ``int``, ``float``,
    ``bool``, ``bytes`` or None; an INSERT without ``values()`` takes its columns from
    ``params``' keys. It runs in ``conn``'s transaction; the cursor is closed.
    """
    cursor = _cursor(conn, statement, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def fetch_one(conn: Connection, statement, params: dict) -> tuple | None:
    """The first row of a prebuilt SELECT (or UPDATE … RETURNING) as a plain driver
    tuple, or None; as :func:`execute`, and the cursor is closed."""
    cursor = _cursor(conn, statement, params)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


def fetch_chunks(conn: Connection, statement, params: dict,
                 size: int = 500) -> Iterator[list[tuple]]:
    """The rows of a prebuilt SELECT as lists of up to ``size`` plain driver tuples.

    Runs on the DBAPI cursor of ``conn``: no SQLAlchemy row objects and no result
    processing, so the columns must be of types the driver returns as they are
    (integers, text). For reads of many rows, such as a mailbox listing. A caller that
    turns each chunk into compact data before taking the next never has more row
    tuples alive than the garbage collector's first threshold (700 by default), so
    reading 100,000 rows triggers no collection at all (with chunks of 2,048: about
    100, one of them a full one of the whole heap).
    """
    cursor = _cursor(conn, statement, params)
    try:
        while chunk := cursor.fetchmany(size):
            yield chunk
    finally:
        cursor.close()


def _pipeline_supported(conn: Connection) -> bool:
    """PostgreSQL through psycopg 3 on a libpq with pipeline mode (14 or later)."""
    if conn.dialect.driver != "psycopg":
        return False
    import psycopg

    return psycopg.Pipeline.is_supported()


class BatchWriter:
    """One thread that commits queued write functions in batches (group commit)."""

    def __init__(self, engine: Engine, reactor=None):
        self.engine = engine
        self._reactor = reactor
        self._pending: deque = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._urgent = 0                      # pending writes that are not background
        self._conn: Connection | None = None  # the writer thread's, kept between batches
        self._checkpointer: _Checkpointer | None = None
        self.batches = 0
        self.writes = 0
        self.flights = 0            # PostgreSQL: batches sent whole with their COMMIT
        self.flights_failed = 0     # … of which one statement failed (run again)
        self.flown_functions = 0    # function writes done by a flight's statements

    def start(self) -> None:
        if self._thread is None:
            from twisted.internet import reactor as default_reactor
            self._reactor = self._reactor or default_reactor
            self._stopping = False
            if self.engine.dialect.name == "sqlite":
                self._checkpointer = _Checkpointer(self.engine)
                self._checkpointer.start()
            self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
            self._thread.start()

    def stop(self) -> defer.Deferred:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread, self._thread = self._thread, None
        checkpointer, self._checkpointer = self._checkpointer, None
        if thread is None:
            return defer.succeed(None)

        def join():
            thread.join()
            if checkpointer is not None:
                checkpointer.stop()

        return threads.deferToThread(join)

    def submit(self, fn: Callable[..., Any], *args, **kwargs) -> defer.Deferred:
        """Queue ``fn(conn, *args, **kwargs)`` for the next batch."""
        return self._queue(_Op(fn, args, kwargs, None))

    def submit_background(self, fn: Callable[..., Any], *args,
                          check: tuple[BatchCheck, Any] | None = None,
                          flight: list | None = None) -> defer.Deferred:
        """Queue ``fn(conn, *args)`` as a write nobody waits on at once: while only
        such writes are queued, the writer waits up to ``LINGER`` for another write to
        commit them with. ``check``: ``(a BatchCheck, key)`` the write needs to pass
        (checked for the whole batch at once, before the functions run). ``flight``:
        ``[(statement, params), …]`` that do what ``fn`` does, each failing when it
        cannot (see :meth:`_flight`); the Deferred then fires with None."""
        op = _Op(fn, args, {}, None)
        op.background = True
        op.check = check
        op.flight = flight
        return self._queue(op)

    def submit_statements(self, statements) -> defer.Deferred:
        """Queue ``[(statement, params), …]``: same statements of a batch run as one
        executemany. The statements must not depend on other writes of the batch."""
        return self._queue(_Op(None, (), {}, statements))

    def _queue(self, op: _Op) -> defer.Deferred:
        with self._cond:
            if self._thread is None:
                raise RuntimeError("the database writer is not running")
            self._pending.append(op)
            if not op.background:
                self._urgent += 1
            self._cond.notify()
        return op.deferred

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    self._drop_connection()
                    return
                if not self._urgent and not self._stopping:
                    deadline = time.monotonic() + LINGER
                    while not self._urgent and not self._stopping:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                batch = [self._pending.popleft()
                         for _ in range(min(len(self._pending), MAX_BATCH))]
                self._urgent -= sum(1 for op in batch if not op.background)
            results = self._commit(batch)
            self._reactor.callFromThread(self._deliver, results)
            if self._checkpointer is not None:
                self._checkpointer.committed()

    def _commit(self, batch, flight: bool = True):
        flew = False
        try:
            with self._transaction() as conn:
                grouped: dict[Any, list] = {}
                for op in batch:
                    for statement, params in op.statements or ():
                        grouped.setdefault(statement, []).append(params)
                pipelined = _pipeline_supported(conn)
                statements = self._flight(batch) if flight and pipelined else None
                if statements is not None:
                    flew = True
                    self._send_flight(conn, grouped, statements)
                    self.flights += 1
                    self.flown_functions += sum(1 for op in batch if op.fn is not None)
                    results = [(op.deferred, True, None) for op in batch]
                else:
                    if grouped and pipelined:
                        self._pipelined(conn, grouped)
                    else:
                        for statement, params in grouped.items():
                            self._executemany(conn, statement, params)
                    _run_checks(conn, batch)
                    results = [(op.deferred, True, op.run(conn)) for op in batch]
            self.batches += 1
            self.writes += len(batch)
            return results
        except BaseException:  # noqa: BLE001 - isolate the failing write below
            if flew:
                # A statement of the flight could not do its write's work (a check
                # not passed, a folder to create): the batch again, the ordinary way.
                self.flights_failed += 1
                return self._commit(batch, flight=False)
            if len(batch) == 1:
                op = batch[0]
                try:
                    with self._transaction() as conn:
                        value = op.run_all(conn)
                except BaseException as exc:  # noqa: BLE001 - reported to the caller
                    return [(op.deferred, False, exc)]
                return [(op.deferred, True, value)]
            results = []
            for op in batch:
                results.extend(self._commit([op], flight))
            return results

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction on the writer's own connection, kept from batch to batch: a
        checkout per batch costs a round trip on PostgreSQL (the pool's pre-ping).
        After any failure the connection goes back to the pool and the next batch
        checks out another (with its pre-ping), so a broken one is not used again."""
        if self._conn is None:
            self._conn = self.engine.connect()
            if self._checkpointer is not None:
                _pragma(self._conn, f"wal_autocheckpoint={WRITER_AUTOCHECKPOINT}")
        try:
            with self._conn.begin():
                yield self._conn
        except BaseException:
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if self._checkpointer is not None:    # back to the pool as SQLite made it
                    _pragma(conn, "wal_autocheckpoint=1000")
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection is thrown away
                pass

    @staticmethod
    def _executemany(conn, statement, rows: list[dict]) -> None:
        """One DBAPI executemany for ``rows``, bypassing per-row bind processing
        (the hot statements only carry str, int, float and bytes values)."""
        prepared = _prepared(conn, statement, rows[0])
        conn.exec_driver_sql(prepared.sql, [prepared.params(row) for row in rows])

    @staticmethod
    def _pipelined(conn, grouped: dict) -> None:
        """PostgreSQL: the transaction's BEGIN and every grouped statement sent in one
        flight (psycopg's pipeline mode), before the batch's functions run. psycopg
        waits for its own BEGIN in a pipeline, and for the pipeline's closing Sync:
        two waits (see :meth:`_send_flight` for a batch that has no function to run)."""
        raw = conn.connection.dbapi_connection
        with raw.pipeline():
            with raw.cursor() as cursor:
                _send_grouped(conn, cursor, grouped)

    @staticmethod
    def _send_flight(conn, grouped: dict, statements: list) -> None:
        """PostgreSQL: BEGIN, the grouped statements, ``statements`` and COMMIT in one
        pipeline with one Sync: one wait on the server for the whole batch. The
        BEGIN and COMMIT are sent as statements, the connection in autocommit mode
        meanwhile: psycopg would send its own BEGIN with a Sync of its own and wait
        for it, and its commit() adds a Sync before the pipeline's. The commit is
        still synchronous (``synchronous_commit`` is the server's). When a statement
        fails, the server skips the rest (the COMMIT too) up to the Sync; the failed
        transaction is rolled back here. A connection whose mode cannot be put back
        is closed, never returned to the pool in autocommit mode."""
        raw = conn.connection.dbapi_connection
        raw.autocommit = True
        try:
            with raw.pipeline():
                with raw.cursor() as cursor:
                    cursor.execute("BEGIN")
                    _send_grouped(conn, cursor, grouped)
                    for statement, params in statements:
                        prepared = _prepared(conn, statement, params)
                        cursor.execute(prepared.sql, prepared.params(params))
                    cursor.execute("COMMIT")
        except BaseException:
            try:
                raw.rollback()
                raw.autocommit = False
            except Exception:  # noqa: BLE001 - the connection is thrown away instead
                conn.invalidate()
            raise
        raw.autocommit = False

    @staticmethod
    def _flight(batch) -> list | None:
        """PostgreSQL: the statements that send the whole batch, after its grouped
        statements, in one flight with its COMMIT, when every function write of it has
        a ``flight`` form and every check a statement form (:meth:`BatchCheck.statement`);
        else None.

        Nothing of a flight's results is read before its COMMIT, so each of its
        statements fails when it cannot do its work (a lease lost, a folder to
        create): the transaction is then rolled back and :meth:`_commit` runs the
        batch again without a flight, functions and checks reading their results."""
        if any(op.fn is not None and op.flight is None for op in batch):
            return None
        keys: dict[BatchCheck, list] = {}
        for op in batch:
            if op.check is not None:
                keys.setdefault(op.check[0], []).append(op.check[1])
        statements = []
        for check, wanted in keys.items():
            statement = check.statement(wanted)
            if statement is None:
                return None
            statements.append(statement)
        for op in batch:
            statements.extend(op.flight or ())
        return statements

    @staticmethod
    def _deliver(results) -> None:
        for d, ok, value in results:
            if ok:
                d.callback(value)
            else:
                d.errback(value)


def _send_grouped(conn: Connection, cursor, grouped: dict) -> None:
    """Each grouped statement as one executemany on ``cursor`` (in a pipeline)."""
    for statement, rows in grouped.items():
        prepared = _prepared(conn, statement, rows[0])
        cursor.executemany(prepared.sql, [prepared.params(row) for row in rows])


def _pragma(conn: Connection, setting: str) -> None:
    """Set a PRAGMA on the driver's connection, outside SQLAlchemy's transaction."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(f"PRAGMA {setting}")
    finally:
        cursor.close()


class _Checkpointer:
    """A thread that checkpoints SQLite's WAL after the writer's commits, so that no
    batch waits for a checkpoint (``PASSIVE``: it never blocks the writer or readers).
    Durability is the WAL's: a commit is durable once its frames are synced, before
    and whether or not they are checkpointed."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="db-checkpoint", daemon=True)
        self.checkpoints = 0

    def start(self) -> None:
        self._thread.start()

    def committed(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        conn = None
        try:
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                if conn is None:
                    conn = self._engine.raw_connection()
                try:
                    cursor = conn.cursor()
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cursor.close()
                    self.checkpoints += 1
                except Exception as exc:  # noqa: BLE001 - the writer checkpoints instead
                    log.warn("WAL checkpoint failed: {exc}", exc=exc)
                    conn.close()
                    conn = None
                self._stopping.wait(CHECKPOINT_EVERY)
        finally:
            if conn is not None:
                conn.close()


class BatchCheck:
    """A condition many writes of a batch need, tested for all of them in one statement
    (one round trip per batch, not one per write): :meth:`run` gets the keys of the
    batch's writes that carry this check and returns those that passed; a write whose
    key did not pass fails with :meth:`failure` — and the batch with it, whose writes
    are then retried one by one, each with its own check. The check runs in the
    batch's transaction, before its functions: what it changes commits with them."""

    def run(self, conn: Connection, keys: list) -> set:
        raise NotImplementedError

    def failure(self, key) -> Exception:
        raise NotImplementedError

    def statement(self, keys: list) -> tuple | None:
        """PostgreSQL: ``(statement, params)`` doing what :meth:`run` does for
        ``keys`` and failing unless every key passes (its result is not read: see
        :meth:`BatchWriter._flight`); None when there is none."""
        return None


def _run_checks(conn: Connection, batch) -> None:
    keys: dict[BatchCheck, list] = {}
    for op in batch:
        if op.check is not None:
            keys.setdefault(op.check[0], []).append(op.check[1])
    for check, wanted in keys.items():
        passed = check.run(conn, wanted)
        for key in wanted:
            if key not in passed:
                raise check.failure(key)


class _Op:
    """One queued write: a function, or statements that may be grouped."""

    __slots__ = ("fn", "args", "kwargs", "statements", "deferred", "background", "check",
                 "flight")

    def __init__(self, fn, args, kwargs, statements):
        self.fn, self.args, self.kwargs, self.statements = fn, args, kwargs, statements
        self.deferred = defer.Deferred()
        self.background = False
        self.check: tuple[BatchCheck, Any] | None = None
        self.flight: list | None = None

    def run(self, conn):
        return self.fn(conn, *self.args, **self.kwargs) if self.fn is not None else None

    def run_all(self, conn):
        for statement, params in self.statements or ():
            conn.execute(statement, params)
        _run_checks(conn, (self,))
        return self.run(conn)


class Database:
    """Engine + reader pool + batch writer for one database URL."""

    def __init__(self, url: str, pool_size: int = 5):
        self.url = url
        self.engine = make_engine(url, pool_size)
        self.is_sqlite = url.startswith("sqlite")
        # True while no other process writes this database (SQLite without workers):
        # then leases and left-over files found at start-up are this process's own.
        self.single_process = self.is_sqlite
        self.writer = BatchWriter(self.engine)
        self._pool = ThreadPool(minthreads=1, maxthreads=max(2, pool_size), name="db-read")
        self._started = False

    # -- lifecycle ------------------------------------------------------------------
    def upgrade(self) -> None:
        """Bring the schema to the newest migration (blocking; call before serving)."""
        from .migrate import upgrade

        upgrade(self.engine)

    def start(self) -> None:
        if not self._started:
            self._pool.start()
            self.writer.start()
            self._started = True

    @defer.inlineCallbacks
    def stop(self):
        if self._started:
            self._started = False
            yield self.writer.stop()
            self._pool.stop()
        self.engine.dispose()

    # -- running SQL off the reactor --------------------------------------------------
    def read(self, fn: Callable[..., Any], *args, **kwargs) -> defer.Deferred:
        """Run ``fn(conn, *args)`` on a reader thread inside a transaction."""
        return self.read_on(self._pool, fn, *args, **kwargs)

    def read_on(self, pool: ThreadPool, fn: Callable[..., Any], *args,
                **kwargs) -> defer.Deferred:
        """Run ``fn(conn, *args)`` with a connection on a thread of ``pool`` (a caller's
        own threads, e.g. for password hashing)."""
        from twisted.internet import reactor

        def run():
            with self.engine.connect() as conn:
                return fn(conn, *args, **kwargs)

        return threads.deferToThreadPool(reactor, pool, run)

    def write(self, fn: Callable[..., Any], *args, **kwargs) -> defer.Deferred:
        """Run ``fn(conn, *args)`` in the writer's next batch; fires after the commit."""
        return self.writer.submit(fn, *args, **kwargs)

    def write_background(self, fn: Callable[..., Any], *args,
                         check: tuple[BatchCheck, Any] | None = None,
                         flight: list | None = None) -> defer.Deferred:
        """Like :meth:`write`, for a write nobody waits on at once (the result of a
        spool run): it may wait a moment to share the commit of an acceptance.
        ``check``: ``(BatchCheck, key)``, see :class:`BatchCheck`; ``flight``: the
        statements that do what ``fn`` does, see :meth:`BatchWriter.submit_background`."""
        return self.writer.submit_background(fn, *args, check=check, flight=flight)

    def write_statements(self, statements) -> defer.Deferred:
        """Execute ``[(statement, params), …]`` in the next batch (grouped executemany)."""
        return self.writer.submit_statements(statements)

    def run_in_thread(self, fn: Callable[..., Any], *args, **kwargs) -> defer.Deferred:
        """Run any blocking ``fn`` on the reader pool (e.g. file I/O, hashing)."""
        from twisted.internet import reactor

        return threads.deferToThreadPool(reactor, self._pool, fn, *args, **kwargs)

    def transaction(self):
        """A blocking ``with db.transaction() as conn`` for the CLI and tests."""
        return self.engine.begin()

    # -- the directory generation -------------------------------------------------------
    @staticmethod
    def bump_generation(conn: Connection) -> None:
        """Record that users/domains/mappings changed so servers reload them."""
        now = repr(time.time())
        res = conn.execute(update(schema.meta).where(schema.meta.c.key == "generation")
                           .values(value=now))
        if res.rowcount == 0:
            conn.execute(schema.meta.insert().values(key="generation", value=now))

    @staticmethod
    def generation(conn: Connection) -> str:
        return conn.execute(select(schema.meta.c.value)
                            .where(schema.meta.c.key == "generation")).scalar() or ""
