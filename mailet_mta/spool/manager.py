"""The spool manager: takes mails from the durable spool and runs them through the pipeline.

A mail enters the spool through :meth:`SpoolManager.accept` (SMTP) or
:meth:`SpoolManager.inject` (bounces, re-injection): its row is committed by the
database writer (group commit) and the mail is then handed to the manager **in
memory** — the database is the record, not the conveyor. Mails found in the database
(after a restart, from another tool, or whose retry time has come) are claimed by a
poll with a lease, so several processes on one PostgreSQL take disjoint work.

Each run of a mail is one :class:`UnitOfWork`; its effects and the mail's removal from
the spool commit together. A run that fails is retried later with back-off; after
``max_tries`` failures the mail is moved to the error repository.
"""

from __future__ import annotations

import contextvars
import time
from collections import deque

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..mail import Mail
from ..storage.blobs import BlobRef, BlobStore
from ..storage.db import Database
from . import store
from .processor import Pipeline, PropagatedError
from .unit_of_work import UnitOfWork, current_uow

log = Logger(namespace="mailet_mta.spool")


class SpoolManager(Service):
    """Runs spooled mails through a :class:`Pipeline` with bounded concurrency."""

    name = "spoolmanager"

    def __init__(self, db: Database, blobs: BlobStore, pipeline: Pipeline | None, *,
                 threads: int = 16, max_tries: int = 5, error_repository: str = "error",
                 node_name: str = "node", lease_seconds: float = 300.0,
                 poll_interval: float = 1.0, clock=None):
        self.db = db
        self.blobs = blobs
        self.pipeline = pipeline
        self.threads = max(1, threads)
        self.max_tries = max_tries
        self.error_repository = error_repository
        self.node_name = node_name
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self._queue: deque[Mail] = deque()
        self._running = 0
        self._arriving: list[Mail] = []       # accepted, handed over on the next turn
        self._pumping = False
        self._finishing = 0                   # ghosted mails whose removal is not committed
        self._idle_waiters: list[defer.Deferred] = []
        self._loops: list[task.LoopingCall] = []
        self._polling = False
        self.processed = 0
        self.failed_runs = 0

    # -- service ------------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        if self.db.is_sqlite:
            # One process owns a SQLite spool: leases left by a previous run are stale.
            with self.db.transaction() as conn:
                from sqlalchemy import update
                conn.execute(update(store.S).values(owner=None, lease_until=None))
        poll = task.LoopingCall(self.poll)
        poll.clock = self.clock
        renew = task.LoopingCall(self._renew)
        renew.clock = self.clock
        self._loops = [poll, renew]
        poll.start(self.poll_interval, now=True)
        renew.start(max(1.0, self.lease_seconds / 3), now=False)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._queue.clear()
        yield self.wait_idle()
        yield self.db.write(store.release_all, self.node_name)

    # -- entry points -------------------------------------------------------------------
    def accept(self, mail: Mail, blob: BlobRef) -> defer.Deferred:
        """Spool a received mail durably; fires after the commit (then say 250)."""
        mail.source.blob_id = blob.id
        d = self.db.write_statements(store.accept_statements(
            mail, blob, self.node_name, time.time() + self.lease_seconds))
        # One reactor turn later, so the protocol's "queued" line precedes the trail.
        d.addCallback(lambda _: self._hand_over(mail))
        return d

    def _hand_over(self, mail: Mail) -> None:
        self._arriving.append(mail)
        if len(self._arriving) == 1:
            self.clock.callLater(0, self._arrive)

    def _arrive(self) -> None:
        arrived, self._arriving = self._arriving, []
        self._queue.extend(arrived)
        self._pump()

    def inject(self, mail: Mail, delay: float = 0.0) -> defer.Deferred:
        """Spool a mail made by the server (bounce, re-injection) in ``mail.state``."""
        uow = UnitOfWork(self.blobs)
        self.spool_in(uow, mail, delay)

        d = self.db.write(uow.commit)
        d.addCallback(lambda _: self._after_commit(uow))
        return d

    def spool_in(self, uow: UnitOfWork, mail: Mail, delay: float = 0.0) -> None:
        """Add ``mail`` as a new spool row to ``uow``; it runs after the commit."""
        blob_id = uow.blob_id_for(mail)
        if delay > 0:
            uow.add(store.insert_mail, mail, blob_id, None, None, time.time() + delay)
        else:
            uow.add(store.insert_mail, mail, blob_id, self.node_name,
                    time.time() + self.lease_seconds)
            uow.spooled.append(mail)

    def _busy(self) -> bool:
        return bool(self._running or self._queue or self._arriving or self._finishing)

    def wait_idle(self) -> defer.Deferred:
        """Fires when no mail is queued or running in this process and every finished
        run is committed."""
        if not self._busy():
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    # -- the in-memory conveyor ---------------------------------------------------------
    def _enqueue(self, mail: Mail) -> None:
        self._queue.append(mail)
        self._pump()

    def _pump(self) -> None:
        # Not re-entered: a run that finishes at once calls _done → _pump from inside
        # this loop, and the loop itself takes the next mail.
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue and self._running < self.threads and self.running:
                mail = self._queue.popleft()
                self._running += 1
                self._step(self._process(mail), contextvars.copy_context())
        finally:
            self._pumping = False
        if not self.running and self._queue:
            # Stopping: a mail handed over now stays in the spool (stopService releases
            # its lease; the next start runs it) instead of keeping wait_idle waiting.
            self._queue.clear()
            self._maybe_idle()

    def _step(self, run, context, result=None) -> None:
        """Drive the coroutine ``run`` until it waits on a Deferred or ends.

        What ``ensureDeferred`` does, without its Deferreds: most runs never wait (or
        wait once, for their commit), and each gets its own copy of the context, so
        ``current_uow`` of one run is not seen by another. ``result`` is what the
        awaited Deferred fired with: a Failure is thrown into the coroutine at its
        ``await`` (the Deferred cannot raise it itself while its callbacks still run).
        """
        while True:
            try:
                if isinstance(result, Failure):
                    failure, result = result, None
                    awaited = context.run(run.throw, failure.value)
                else:
                    awaited = context.run(run.send, None)
            except StopIteration:
                self._done(None)
                return
            except BaseException:  # noqa: BLE001 - _process handles errors; a bug here
                log.failure("spool run crashed")
                self._done(None)
                return
            if isinstance(awaited, defer.Deferred):
                awaited.addBoth(self._resume, run, context)
                return

    def _resume(self, result, run, context) -> None:
        # A success is read by the awaiting Deferred.__iter__ itself; a failure is
        # thrown in, and so consumed here (never "Unhandled error in Deferred").
        self._step(run, context, result)

    def _done(self, _):
        self._running -= 1
        self.processed += 1
        self._pump()
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if not self._busy():
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def _removed(self, result, mail: Mail):
        self._finishing -= 1
        if isinstance(result, Failure):
            # The row stays leased to this node: a restart (or, on a shared database,
            # the lease running out) runs the mail again; its run changed nothing.
            log.failure("id={id} was processed but its removal from the spool failed",
                        result, id=mail.name)
        self._maybe_idle()

    async def _process(self, mail: Mail) -> None:
        original_state = mail.state
        uow = UnitOfWork(self.blobs)
        token = current_uow.set(uow)
        try:
            await self.pipeline.run(mail)
        except Exception as exc:  # noqa: BLE001 - PropagatedError or a bug: retry
            current_uow.reset(token)
            uow.abort()
            if not isinstance(exc, PropagatedError):
                log.failure("id={id} processing failed", id=mail.name)
            mail.state = original_state
            await self._failed(mail, str(exc))
            return
        current_uow.reset(token)
        try:
            if uow.empty and self.db.is_sqlite:
                # One process owns a SQLite spool and the run changed nothing: the
                # grouped delete is enough, and the run's slot is free before it commits.
                d = self.db.write_statements([(store.DELETE_SPOOL, {"mail_name": mail.name})])
                self._finishing += 1
                d.addBoth(self._removed, mail)
                return
            else:
                # Shared database: the run counts only if this node still holds the mail.
                uow.add(store.finish_owned, mail.name, self.node_name)
                await self.db.write_background(uow.commit)
        except store.LeaseLost:
            uow.abort()
            log.warn("id={id} was taken over by another node while it ran here; this "
                     "run's results are discarded", id=mail.name)
            return
        except Exception as exc:  # noqa: BLE001 - the commit failed: retry the run
            uow.abort()
            log.failure("id={id} could not record the result of its run", id=mail.name)
            await self._failed(mail, f"commit failed: {exc}")
            return
        self._after_commit(uow)

    def _after_commit(self, uow: UnitOfWork) -> None:
        for new in uow.spooled:
            self._enqueue(new)
        for callback in uow.after_commit:
            try:
                callback()
            except Exception:  # noqa: BLE001
                log.failure("after-commit callback failed")

    async def _failed(self, mail: Mail, error: str) -> None:
        self.failed_runs += 1
        tries = getattr(mail, "spool_tries", 0) + 1
        if tries >= self.max_tries:
            log.error("id={id} failed {n} times; moved to repository {repo}: {error}",
                      id=mail.name, n=tries, repo=self.error_repository, error=error)
            mail.error_message = error
            blob_id = mail.source.blob_id
            try:
                await self.db.write(store.move_to_repository, mail, blob_id,
                                    self.error_repository)
            except Exception:  # noqa: BLE001 - the row stays; a later poll retries
                log.failure("id={id} could not be moved to the error repository", id=mail.name)
            return
        delay = min(600.0, 5.0 * (2 ** (tries - 1)))
        log.warn("id={id} run failed (try {n} of {max}); retry in {delay:.0f}s: {error}",
                 id=mail.name, n=tries, max=self.max_tries, delay=delay, error=error)
        try:
            await self.db.write(store.record_failure, mail.name, time.time() + delay, error)
        except Exception:  # noqa: BLE001
            log.failure("id={id} could not record a failed run", id=mail.name)

    # -- the database side --------------------------------------------------------------
    @defer.inlineCallbacks
    def poll(self):
        """Claim due mails that no live node holds and run them."""
        if self._polling or not self.running:
            return
        room = self.threads * 4 - len(self._queue) - self._running
        if room <= 0:
            return
        self._polling = True
        try:
            names = yield self.db.write(store.claim, self.node_name, self.lease_seconds, room)
            if names:
                mails = yield self.db.read(store.load_mails, names, self.blobs)
                for mail in mails:
                    self._enqueue(mail)
        except Exception:  # noqa: BLE001 - next poll tries again
            log.failure("spool poll failed")
        finally:
            self._polling = False

    def _renew(self):
        d = self.db.write(store.renew_leases, self.node_name, self.lease_seconds)
        d.addErrback(lambda f: log.failure("lease renewal failed", f))
        return d
