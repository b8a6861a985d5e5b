"""The spool runner: runs the mails of the run queue through the pipeline.

Each run of a mail is one :class:`UnitOfWork`; its effects and the mail's removal from
the spool commit together. A run that fails is retried later with back-off; after
``max_tries`` failures the mail is moved to the error repository. Mails found in the
database (after a restart, from another tool, or whose retry time has come) are
claimed by a poll with a lease, so several processes on one PostgreSQL take disjoint
work; the leases of the mails in flight here are renewed while they run.
"""

from __future__ import annotations

import contextvars
import time

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..mail import Mail
from ..storage.blobs import BlobStore
from ..storage.db import Database
from . import store
from .intake import SpoolIntake
from .processor import Pipeline, PropagatedError
from .run_queue import RunQueue
from .unit_of_work import UnitOfWork, current_uow

log = Logger(namespace="mailet_mta.spool")


class SpoolRunner(Service):
    """Runs queued mails through a :class:`Pipeline` with bounded concurrency."""

    name = "spoolmanager"

    def __init__(self, db: Database, blobs: BlobStore, queue: RunQueue, intake: SpoolIntake,
                 pipeline: Pipeline, *, threads: int = 16, max_tries: int = 5,
                 error_repository: str = "error", node_name: str = "node",
                 lease_seconds: float = 300.0, poll_interval: float = 1.0):
        self.db = db
        self.blobs = blobs
        self.queue = queue
        self.intake = intake
        self.pipeline = pipeline
        self.threads = max(1, threads)
        self.max_tries = max_tries
        self.error_repository = error_repository
        self.node_name = node_name
        self._finish = store.FinishOwned(node_name)  # the lease-checked removal
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.clock = queue.clock
        self._running = 0
        self._pumping = False
        self._finishing = 0                   # ghosted mails whose removal is not committed
        self._idle_waiters: list[defer.Deferred] = []
        self._loops: list[task.LoopingCall] = []
        self._polling = False
        self.processed = 0
        self.failed_runs = 0
        queue.subscribe(self._pump)

    # -- service ------------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        if self.db.single_process:
            # One process owns a SQLite spool: leases left by a previous run are stale.
            with self.db.transaction() as conn:
                store.release_every_lease(conn)
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
        self.queue.clear()
        yield self.wait_idle()
        try:
            yield self.db.write(store.release_all, self.node_name)
        except Exception as exc:  # noqa: BLE001 - the leases then simply expire
            log.warn("could not release this node's spool leases on stop ({error}); "
                     "they expire after {seconds}s", error=exc, seconds=self.lease_seconds)

    def reconfigure(self, new_config, pipeline: Pipeline) -> None:
        """Run new mails on ``pipeline`` with ``new_config.spoolmanager``'s limits; the
        previous pipeline is destroyed once the mails running on it are done."""
        sm = new_config.spoolmanager
        old, self.pipeline = self.pipeline, pipeline
        self.threads = max(1, sm.threads)
        self.max_tries = sm.max_tries
        self.error_repository = sm.error_repository
        d = self.wait_idle()
        d.addCallback(lambda _: old.destroy())
        d.addErrback(lambda f: log.failure("destroying the previous pipeline failed", f))
        self._pump()     # more threads may take queued mails now

    def _busy(self) -> bool:
        return bool(self._running or self.queue.queued or self._finishing)

    def wait_idle(self) -> defer.Deferred:
        """Fires when no mail is queued or running in this process and every finished
        run is committed."""
        if not self._busy():
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    # -- driving the runs ---------------------------------------------------------------
    def _pump(self) -> None:
        # Not re-entered: a run that finishes at once calls _done → _pump from inside
        # this loop, and the loop itself takes the next mail.
        if self._pumping:
            return
        self._pumping = True
        try:
            while self.queue.runnable and self._running < self.threads and self.running:
                mail = self.queue.take()
                self._running += 1
                self._step(self._process(mail), contextvars.copy_context())
        finally:
            self._pumping = False
        if not self.running and self.queue.runnable:
            # Stopping: a mail handed over now stays in the spool (stopService releases
            # its lease; the next start runs it) instead of keeping wait_idle waiting.
            self.queue.clear()
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
            # The row stays leased to this node, no longer renewed: when the lease runs
            # out a poll runs the mail again; its run changed nothing.
            log.failure("id={id} was processed but its removal from the spool failed",
                        result, id=mail.name)
        self._maybe_idle()

    # -- one run ------------------------------------------------------------------------
    async def _process(self, mail: Mail) -> None:
        try:
            await self._run(mail)
        finally:
            self.queue.finished(mail)

    async def _run(self, mail: Mail) -> None:
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
            if uow.empty and self.db.single_process:
                # One process owns a SQLite spool and the run changed nothing: the
                # grouped delete is enough, and the run's slot is free before it commits.
                d = self.db.write_statements(store.remove_statements(mail.name))
                self._finishing += 1
                d.addBoth(self._removed, mail)
                return
            # Shared database: the run counts only if this node still holds the mail.
            await self.db.write_background(uow.commit, check=(self._finish, mail.name),
                                           flight=uow.flight())
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
        self.intake.after_commit(uow)

    async def _failed(self, mail: Mail, error: str) -> None:
        self.failed_runs += 1
        tries = getattr(mail, "spool_tries", 0) + 1
        if tries >= self.max_tries:
            log.error("id={id} failed {n} times; moved to repository {repo}: {error}",
                      id=mail.name, n=tries, repo=self.error_repository, error=error)
            mail.error_message = error
            try:
                await self.db.write(store.move_to_repository, mail, mail.source.blob_id,
                                    self.error_repository)
            except Exception:  # noqa: BLE001 - the lease runs out; a later poll retries
                log.failure("id={id} could not be moved to the error repository", id=mail.name)
            return
        delay = min(600.0, 5.0 * (2 ** (tries - 1)))
        log.warn("id={id} run failed (try {n} of {max}); retry in {delay:.0f}s: {error}",
                 id=mail.name, n=tries, max=self.max_tries, delay=delay, error=error)
        try:
            await self.db.write(store.record_failure, mail.name, time.time() + delay, error)
        except Exception:  # noqa: BLE001 - the lease runs out; a later poll retries
            log.failure("id={id} could not record a failed run", id=mail.name)

    # -- the database side --------------------------------------------------------------
    @defer.inlineCallbacks
    def poll(self):
        """Claim due mails that no live node holds and run them."""
        if self._polling or not self.running:
            return
        room = self.threads * 4 - self.queue.queued - self._running
        if room <= 0:
            return
        self._polling = True
        try:
            names = yield self.db.write(store.claim, self.node_name, self.lease_seconds, room)
            if names:
                mails = yield self.db.read(store.load_mails, names, self.blobs)
                for mail in mails:
                    self.queue.put(mail)
        except Exception:  # noqa: BLE001 - next poll tries again
            log.failure("spool poll failed")
        finally:
            self._polling = False

    def _renew(self):
        """Extend the leases of the mails in flight here (and of no other row)."""
        names = sorted(self.queue.in_flight)
        if not names:
            return None
        d = self.db.write(store.renew_leases, self.node_name, self.lease_seconds, names)
        d.addErrback(lambda f: log.failure("lease renewal failed", f))
        return d
