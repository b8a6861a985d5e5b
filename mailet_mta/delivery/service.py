"""The outgoing queue service: claims due entries, delivers them, retries, bounces.

Claimed entries are grouped by destination (a domain, or the gateway) and handed to up
to ``per_destination`` workers per destination and ``concurrency`` workers in all. A
worker keeps one SMTP session open and sends entry after entry through it. For each
entry it tries the destination's hosts in order until every recipient has a final
answer or the hosts are exhausted; what remains is rescheduled by ``delayTime`` or, when
the retries are used up, bounced. See :mod:`.worker` for one entry's delivery.
"""

from __future__ import annotations

import socket

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import queue_store
from .credentials import RelayCredentials
from .options import DeliveryOptions
from .tls_reports import TLSReports
from .worker import Destination, DestinationWorker

log = Logger(namespace="mailet_mta.delivery")


class OutgoingQueueService(service.Service):
    """Delivers the ``outgoing`` table: a twisted Service (start/stop with the server).

    ``inject(mail) -> Deferred`` puts a bounce or onSuccess mail into the spool.
    ``credentials`` holds the gateway passwords (from the configuration, never the queue).
    ``clock`` schedules polls, retries and reply timeouts; ``reactor`` makes the
    connections. ``mta_sts`` (an :class:`~.mta_sts.MTASTS`) applies destinations'
    MTA-STS policies; ``trust_root`` verifies certificates (default the system's CAs);
    ``tls_reports`` counts TLS sessions for TLS-RPT.
    """

    name = "outgoing-queue"

    def __init__(self, db, blobs, resolver, inject, node_name: str, clock=None,
                 concurrency: int = 20, per_destination: int = 3, *, reactor=None,
                 helo_name: str | None = None, poll_interval: float = 5.0,
                 lease: float = 900.0, claim_batch: int = 200,
                 credentials: RelayCredentials | None = None, mta_sts=None,
                 trust_root=None, tls_reports: bool = False, dane: bool = False):
        from twisted.internet import reactor as default_reactor

        self.db = db
        self.blobs = blobs
        self.resolver = resolver
        self.inject = inject
        self.node_name = node_name
        self.clock = clock or default_reactor
        self.reactor = reactor or default_reactor
        self.concurrency = concurrency
        self.per_destination = per_destination
        self.helo_name = helo_name or socket.getfqdn()
        self.poll_interval = poll_interval
        self.lease = lease
        self.claim_batch = claim_batch
        self.credentials = credentials if credentials is not None else RelayCredentials()
        self.mta_sts = mta_sts                  # MTASTS, or None when tlsPolicy.mtaSts is off
        self.trust_root = trust_root            # CAs for verified delivery; None: the system's
        self.dane = dane                        # look up TLSA records of MX hosts
        self.tls_reports = (TLSReports(db, self.clock, self.track_write) if tls_reports
                            else None)
        self.destinations: dict[tuple, Destination] = {}
        self.workers: set[defer.Deferred] = set()
        self.pending_writes: set[defer.Deferred] = set()
        self.claimed = 0
        self.delivered = 0
        self._poll_call = None
        self._polling = False
        self._poll_again = False

    # -- lifecycle -------------------------------------------------------------------------
    def startService(self):
        super().startService()
        self._schedule_poll(0)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._poll_call is not None and self._poll_call.active():
            self._poll_call.cancel()
        waiting = [item.entry.id for dest in self.destinations.values()
                   for item in dest.queue]
        for dest in self.destinations.values():
            dest.queue.clear()
        if waiting:
            yield self.db.write(_release, waiting, self.node_name)
        yield defer.DeferredList(list(self.workers))
        yield defer.DeferredList(list(self.pending_writes))

    def reconfigure(self, config, roots=None) -> None:
        """A reloaded configuration: its gateway passwords and its ``tlsPolicy`` apply
        from the next connection on (``roots``: the trust root of its ``caFile``, read
        when the reload was planned)."""
        self.credentials = RelayCredentials.from_config(config)
        self.apply_tls_policy(config.tls_policy, roots)

    def apply_tls_policy(self, policy, roots) -> None:
        """Use the ``tlsPolicy`` settings: MTA-STS, DANE, TLS-RPT counts, trust roots."""
        from .mta_sts import MTASTS, PolicyFetcher

        self.trust_root = roots
        self.mta_sts = (MTASTS(self.db, self.resolver, PolicyFetcher(
            self.reactor, self.resolver, roots, policy.fetch_timeout))
            if policy.mta_sts else None)
        self.dane = policy.dane
        self.tls_reports = (TLSReports(self.db, self.clock, self.track_write)
                            if policy.tls_reports else None)

    def wake(self) -> None:
        """Deliver due entries now (call after enqueueing)."""
        if self.running:
            self._schedule_poll(0)

    # -- polling -------------------------------------------------------------------------------
    def _schedule_poll(self, delay: float) -> None:
        if self._polling:
            self._poll_again = True
            return
        if self._poll_call is not None and self._poll_call.active():
            if self._poll_call.getTime() <= self.clock.seconds() + delay:
                return
            self._poll_call.cancel()
        self._poll_call = self.clock.callLater(delay, self._poll)

    def _poll(self) -> defer.Deferred:
        self._poll_call = None
        self._polling = True
        d = defer.ensureDeferred(self._claim())
        d.addErrback(lambda f: log.failure("claiming outgoing entries failed", f))
        d.addBoth(self._polled)
        return d

    def _polled(self, full) -> None:
        self._polling = False
        if not self.running:
            return
        again, self._poll_again = self._poll_again, False
        self._schedule_poll(0 if (again or full is True) else self.poll_interval)

    async def _claim(self) -> bool:
        room = self.concurrency * 50 - self.claimed
        if room <= 0:
            return False
        limit = min(room, self.claim_batch)
        now = self.clock.seconds()
        entries = await self.db.write(queue_store.claim_due, self.node_name, now,
                                      self.lease, limit)
        for entry in entries:
            self._dispatch(entry)
        self._start_workers()
        return len(entries) == limit

    def _dispatch(self, entry: queue_store.QueueEntry) -> None:
        options = DeliveryOptions.from_dict(entry.options)
        key = ("*" if options.gateways else entry.domain, options.connection_key())
        dest = self.destinations.get(key)
        if dest is None:
            dest = self.destinations[key] = Destination(key, entry.domain, options)
        dest.add(entry)
        self.claimed += 1

    # -- workers ----------------------------------------------------------------------------------
    def _start_workers(self) -> None:
        for dest in list(self.destinations.values()):
            while (dest.queue and len(self.workers) < self.concurrency
                   and dest.workers < min(self.per_destination, len(dest.queue))):
                self._start_worker(dest)

    def _start_worker(self, dest: Destination) -> None:
        dest.workers += 1
        worker = DestinationWorker(self, dest)
        d = defer.ensureDeferred(worker.run())
        self.workers.add(d)

        def done(result):
            self.workers.discard(d)
            dest.workers -= 1
            if not dest.workers and not dest.queue:
                self.destinations.pop(dest.key, None)
            if isinstance(result, Failure):
                log.failure("delivery worker for {dest} failed", result, dest=dest.domain)
            self._start_workers()

        d.addBoth(done)

    def entry_done(self) -> None:
        """One claimed entry is finished (delivered, rescheduled or bounced)."""
        self.claimed -= 1
        if self.running and self.claimed == 0:
            self._schedule_poll(0)

    def track_write(self, d: defer.Deferred) -> defer.Deferred:
        """Keep a fire-and-forget write in view (stopService waits for it)."""
        self.pending_writes.add(d)

        def done(result):
            self.pending_writes.discard(d)
            if isinstance(result, Failure):
                log.failure("outgoing queue write failed", result)

        d.addBoth(done)
        return d


def _release(conn, ids, owner):
    from sqlalchemy import update

    T = queue_store.T
    conn.execute(update(T).where(T.c.id.in_(ids), T.c.owner == owner)
                 .values(owner=None, lease_until=None))

