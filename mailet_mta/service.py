"""Builds the running server — one Twisted ``MultiService`` — from a ServerConfig.

:class:`MailServer` assembles every part in one pass, each from the parts built before
it: storage, the directory, the spool (run queue, intake, mailet context, pipeline,
runner), the outgoing queue, the listeners. Nothing is wired in afterwards.

Start order: database (migrations, writer thread), directory, spool runner, outgoing
queue, then the listeners; ``startService`` returns a Deferred that fires once every
listener listens (:meth:`MailServer.when_ready`). Stop order is the reverse: listeners
close first (SMTP sessions get ``421``), in-flight mails finish their runs, the writer
drains, and the database closes. The bound addresses of all listeners are written to
``<data_dir>/listeners.json`` once they listen (useful with port 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailets import sender_rewriting

from .acceptance import SpoolBackend
from .api import ConfigurationError
from .config.model import ServerConfig
from .config.retention import repositories_config
from .config.webadmin import webadmin_config
from .config.webmail import webmail_config
from .context import MailetContext
from .delivery.credentials import RelayCredentials
from .delivery.resolver import Resolver
from .delivery.service import OutgoingQueueService
from .directory import Directory, configured_mappings
from .logging_setup import TrailObserver
from .mail import MimeLimits
from .metrics import MetricsObserver, metrics_listen, metrics_service, process_figures
from .nodes import NodeRegistry
from .pop3.factory import make_pop3_service
from .reload import install_reload, reload_config
from .retrieval import DatabaseMailStore
from .smtp.server import make_smtp_service
from .spool.intake import SpoolIntake
from .spool.observer import Observers, PipelineObserver
from .spool.processor import Pipeline
from .spool.run_queue import RunQueue
from .spool.runner import SpoolRunner
from .storage.auth_throttle import AuthThrottle
from .storage.authenticator import Authenticator
from .storage.blobs import BlobStore, blob_dir
from .storage.db import Database, default_url
from .storage.private_files import make_private_dir
from .tls import trust_root
from .webmail_credential import WebmailCredential
from .worker_role import WorkerRole

if TYPE_CHECKING:
    from .web.webadmin import WebAdminService
    from .web.webmail import WebmailService

log = Logger(namespace="mailet_mta.service")

BLOB_SWEEP_INTERVAL = 600.0
BLOB_LEFTOVER_AGE = 3600.0


def default_node_name(data_dir) -> str:
    """``<host>-<8 hex of the data directory>``: stable across restarts, so a restarted
    process takes back at once what its killed predecessor held."""
    digest = hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def reclaim_own_work(conn, node_name: str) -> None:
    """At start-up: release the leases a previous process of this node left behind."""
    from sqlalchemy import delete, update

    from .storage import schema

    for table in (schema.spool, schema.outgoing):
        conn.execute(update(table).where(table.c.owner == node_name)
                     .values(owner=None, lease_until=None))
    conn.execute(delete(schema.mailbox_locks)
                 .where(schema.mailbox_locks.c.owner.like(node_name + "/%")))


def pipeline_observer(config: ServerConfig) -> PipelineObserver:
    """The pipeline's observer: the log trail, and processor timing when ``/metrics``
    is served."""
    if metrics_listen(config):
        return Observers([TrailObserver(), MetricsObserver()])
    return TrailObserver()


class MailServer(MultiService):
    """The whole server, assembled in one pass; its parts are attributes for tests and
    the CLI. Nothing is patched in after it is built: a part that changes at reload
    offers ``reconfigure``, and :mod:`mailet_mta.reload` calls those."""

    def __init__(self, config: ServerConfig, node_name: str | None = None,
                 worker: WorkerRole | None = None):
        super().__init__()
        from twisted.internet import reactor

        sm = config.spoolmanager
        self.config = config
        self.worker = worker
        self.data_dir = Path(config.storage.data_dir)
        self.node_name = node_name or default_node_name(self.data_dir)
        if worker is not None:
            self.node_name = worker.node_name(self.node_name)
        make_private_dir(self.data_dir)
        # Storage: the database (schema up to date) and the message bodies.
        self.db = Database(config.storage.url or default_url(self.data_dir),
                           config.storage.pool_size)
        # Worker processes share one SQLite file the way nodes share PostgreSQL.
        self.db.single_process = self.db.is_sqlite and worker is None
        self.db.upgrade()
        self.blobs = BlobStore(blob_dir(config), config.storage.inline_blob_limit)
        self.directory = Directory(self.db, config.servernames, config.postmaster_address,
                                   configured_mappings(sm),
                                   sender_rewriting.configured(sm, config.server_name))
        self.directory.load_sync()
        # The spool: mails enter through the intake onto the run queue...
        self.run_queue = RunQueue(reactor)
        self.intake = SpoolIntake(self.db, self.blobs, self.run_queue,
                                  node_name=self.node_name, lease_seconds=sm.lease_seconds)
        # ...mailets reach remote delivery and the spool through the context...
        self.resolver = Resolver(config.dns)
        self.outgoing = OutgoingQueueService(
            self.db, self.blobs, self.resolver, self.intake.inject, self.node_name,
            helo_name=config.server_name, credentials=RelayCredentials.from_config(config))
        self.outgoing.apply_tls_policy(config.tls_policy, trust_root(
            config.tls_policy.ca_file, config.tls_policy.source))
        self.observer = pipeline_observer(config)
        context = MailetContext(config, self.directory, self.blobs, intake=self.intake,
                                resolver=self.resolver, outgoing=self.outgoing)
        # ...and the runner takes queued mails through the processors.
        self.spool = SpoolRunner(self.db, self.blobs, self.run_queue, self.intake,
                                 Pipeline(sm, context, self.observer), threads=sm.threads,
                                 max_tries=sm.max_tries, error_repository=sm.error_repository,
                                 node_name=self.node_name, lease_seconds=sm.lease_seconds)
        self.registry = NodeRegistry(
            self.db, self.node_name, figures=process_figures,
            info={"worker": worker.index} if worker is not None else None)
        sweeper = TimerService(BLOB_SWEEP_INTERVAL, self._sweep_blobs)
        purger = TimerService(repositories_config(config).purge_interval,
                              self._purge_repositories)
        # The web mail's internal credential (every process: any of them may accept
        # the web mail's submission connection on a shared socket).
        self.webmail_credential = (WebmailCredential.of_data_dir(self.data_dir)
                                   if webmail_config(config).enabled else None)
        # The listeners, and the /metrics endpoint when configured.
        self.listeners: list = self._build_listeners()
        self.metrics = metrics_service(config, self)
        if self.metrics is not None:
            self.listeners.append(("metrics", "http", self.metrics))
        # The web stack (and the IMAP server in _build_listeners) loads only when
        # configured: a server without them does not pay their import time and memory.
        self.webadmin: WebAdminService | None = None
        if webadmin_config(config).enabled:
            from .web.webadmin import webadmin_service

            self.webadmin = webadmin_service(config, self)
        if self.webadmin is not None:
            self.listeners.append(("webadmin", "http", self.webadmin))
        # Webmail sessions live in the database: every worker serves the web mail on
        # the shared address, as every node on one PostgreSQL does.
        self.webmail: WebmailService | None = None
        if webmail_config(config).enabled:
            from .web.webmail import webmail_service

            self.webmail = webmail_service(config, self)
        if self.webmail is not None:
            self.listeners.append(("webmail", "http", self.webmail))
        if worker is not None:
            worker.adopt_listeners(self.listeners)
        # Start order; stop order is the reverse.
        for svc in (self.registry, self.spool, sweeper, purger, self.outgoing,
                    *(svc for _name, _kind, svc in self.listeners)):
            svc.setServiceParent(self)
        self._ready: list[defer.Deferred] = []
        self._ready_result = None

    @property
    def pipeline(self) -> Pipeline:
        """The processors new mails run on (replaced at reload)."""
        return self.spool.pipeline

    @property
    def context(self) -> MailetContext:
        """The mailet context of the running pipeline."""
        return self.spool.pipeline.context

    def reconfigure(self, new_config: ServerConfig) -> None:
        """Take ``new_config`` as the configuration in force (its parts apply their own)."""
        self.config = new_config

    def reload(self) -> defer.Deferred:
        """Re-read the configuration file and apply it; fires True, or False if refused."""
        return reload_config(self)

    def _build_listeners(self) -> list:
        """(name, kind, service) of every configured SMTP, POP3 and IMAP listener."""
        # One throttle for every protocol. SMTP sessions apply their listener's failure
        # delay themselves; POP3 logins get theirs from the authenticator.
        throttle = AuthThrottle.from_config(self.config.auth_throttle)
        self.authenticator = Authenticator(self.db, failure_delay=0, throttle=throttle,
                                           default_domain=self.config.server_name)
        listeners = []
        for cfg in self.config.smtpservers:
            backend = SpoolBackend(self.config, cfg, self.directory, self.authenticator,
                                   self.blobs, self.intake, context=self.context,
                                   webmail_credential=self.webmail_credential)
            listeners.append((cfg.name, "smtp", make_smtp_service(cfg, backend)))
        for cfg in self.config.pop3servers:
            authenticator = Authenticator(self.db, failure_delay=cfg.auth_failure_delay,
                                          throttle=throttle,
                                          default_domain=self.config.server_name)
            backend = DatabaseMailStore(self.db, self.blobs, authenticator, self.node_name)
            listeners.append((cfg.name, "pop3", make_pop3_service(cfg, backend)))
        sm = self.config.spoolmanager
        mime_limits = MimeLimits(sm.max_mime_parts, sm.max_mime_depth)
        for cfg in self.config.imapservers:
            from .imap.factory import make_imap_service

            authenticator = Authenticator(self.db, failure_delay=cfg.auth_failure_delay,
                                          throttle=throttle,
                                          default_domain=self.config.server_name)
            backend = DatabaseMailStore(self.db, self.blobs, authenticator, self.node_name,
                                        max_message_size=cfg.max_message_size)
            listeners.append((cfg.name, "imap",
                              make_imap_service(cfg, backend, mime_limits=mime_limits)))
        return listeners

    def _sweep_blobs(self):
        """Remove message bodies nothing refers to any more (deleted mail, bounces)."""
        d = self.db.write(self.blobs.sweep)
        d.addCallback(lambda n: n and log.info("blob sweep removed {n} bodies", n=n))
        d.addErrback(lambda f: log.failure("blob sweep failed", f))
        return d

    def _remove_blob_leftovers(self, conn) -> None:
        """At start-up: partial and orphan body files. Alone on SQLite this process is
        the only writer; otherwise only files older than an hour are touched."""
        alone = self.db.single_process
        removed = self.blobs.remove_leftovers(conn, 0.0 if alone else BLOB_LEFTOVER_AGE)
        if removed:
            log.info("removed {n} left-over blob files (interrupted writes)", n=removed)

    def _purge_repositories(self):
        """Enforce repositories.retention (in the writer thread, off the reactor)."""
        from .storage.repositories import apply_retention

        rules = repositories_config(self.config).retention
        if not rules:
            return None
        d = self.db.write(apply_retention, rules)
        d.addCallback(lambda purged: [
            log.info("repository {name}: purged {n} mails past its retention", name=name,
                     n=n) for name, n in purged.items()])
        d.addErrback(lambda f: log.failure("repository purge failed", f))
        return d

    # -- lifecycle ----------------------------------------------------------------------
    def startService(self) -> defer.Deferred:
        """Start every part. The Deferred fires with what :meth:`when_ready` gives once
        every listener listens, or with None when one could not: that failure is
        logged, kept in ``start_error`` and stops the reactor, and ``serve``/``twistd``
        (which ignore this Deferred) say it in one line; ``when_ready()`` fails with
        it."""
        with self.db.transaction() as conn:
            reclaim_own_work(conn, self.node_name)
            self._remove_blob_leftovers(conn)
        self.db.start()
        self.directory.start()
        super().startService()
        install_reload(self)
        d = defer.gatherResults([defer.maybeDeferred(_listening, svc)
                                 for _n, _k, svc in self.listeners], consumeErrors=True)
        d.addCallback(self._write_listeners)
        d.addErrback(self._listen_failed)
        d.addBoth(self._now_ready)
        return self.when_ready().addErrback(lambda _reported: None)

    def when_ready(self) -> defer.Deferred:
        """Fires with ``{listener name: {"protocol", "host", "port"}}`` once every
        listener listens, or fails with the error of one that could not."""
        d = defer.Deferred()
        if self._ready_result is not None:
            self._fire_ready(d)
        else:
            self._ready.append(d)
        return d

    def _now_ready(self, result) -> None:
        self._ready_result = result if result is not None else {}
        waiters, self._ready = self._ready, []
        for d in waiters:
            self._fire_ready(d)

    def _fire_ready(self, d: defer.Deferred) -> None:
        result = self._ready_result
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)

    def _write_listeners(self, ports) -> dict:
        """Log the bound addresses and record them in listeners.json (a worker tells
        its supervisor instead, which writes the file for all)."""
        info = {}
        for (name, kind, _svc), port in zip(self.listeners, ports):
            host = port.getHost() if port is not None else None
            info[name] = {"protocol": kind, "host": getattr(host, "host", None),
                          "port": getattr(host, "port", None)}
            log.info("listening: {name} ({kind}) on {host}:{port}", name=name, kind=kind,
                     host=info[name]["host"], port=info[name]["port"])
        if self.worker is not None:
            self.worker.report_ready(self.node_name, info)
            return info
        tmp = self.data_dir / "listeners.json.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "node": self.node_name,
                                   "listeners": info}, indent=2))
        os.replace(tmp, self.data_dir / "listeners.json")
        return info

    def _listen_failed(self, failure) -> Failure:
        log.critical("a listener could not start: {error}", error=listen_error(failure))
        from twisted.internet import reactor

        self.start_error = failure
        if reactor.running:
            reactor.stop()
        else:                  # twistd starts the services before the reactor runs
            reactor.callWhenRunning(reactor.stop)
        return failure

    @defer.inlineCallbacks
    def stopService(self):
        remove_listeners_file(self.data_dir)
        # Listeners first (reverse of start order), then the spool, then the database.
        # One part that fails to stop (a full disk refusing the spool's last write, say)
        # is logged and the rest still stop: above all the database, whose threads
        # would otherwise keep the process alive after the reactor has stopped.
        try:
            for svc in reversed(list(self)):
                if svc.running:
                    try:
                        yield defer.maybeDeferred(svc.stopService)
                    except Exception:  # noqa: BLE001 - logged; the others still stop
                        log.failure("{name} did not stop cleanly",
                                    name=getattr(svc, "name", None) or type(svc).__name__)
            self.running = 0
            self.directory.stop()
            self.pipeline.destroy()
        finally:
            yield self.db.stop()


def remove_listeners_file(data_dir: Path) -> None:
    """Remove ``<data_dir>/listeners.json`` if this process wrote it."""
    marker = data_dir / "listeners.json"
    try:
        if json.loads(marker.read_text()).get("pid") == os.getpid():
            marker.unlink()
    except (OSError, ValueError):
        pass


def listen_error(failure) -> str:
    """The CannotListenError inside ``failure`` (also inside a gatherResults
    FirstError) as one line: "Couldn't listen on 127.0.0.1:25: [Errno 98] …"."""
    value = failure.value
    while isinstance(value, defer.FirstError):
        value = value.subFailure.value
    return " ".join(str(value).split())


def _listening(svc):
    """The Deferred a listener service fires with its listening port (IListeningPort)."""
    return svc.listening


def configured_listeners(config: ServerConfig) -> list[tuple[str, str, str | None]]:
    """(key, endpoint string, source) of every listener :class:`MailServer` builds, the
    key being ``<kind>:<name>`` as in its ``listeners``: what a supervisor opens for
    its worker processes. A protocol added to ``_build_listeners`` is added here too
    (a worker refuses to start with a listener that has no shared socket)."""
    found = [(f"smtp:{c.name}", c.listen, c.source) for c in config.smtpservers]
    found += [(f"pop3:{c.name}", c.listen, c.source) for c in config.pop3servers]
    found += [(f"imap:{c.name}", c.listen, c.source) for c in config.imapservers]
    listen = metrics_listen(config)
    if listen:
        found.append(("http:metrics", listen,
                      getattr(config.extra["metrics"], "source", None)))
    for section, http in (("webadmin", webadmin_config(config)),
                          ("webmail", webmail_config(config))):
        if http.enabled:
            found.append((f"http:{section}", http.endpoint,
                          getattr(config.extra.get(section), "source", None)))
    return found


def build_server(config: ServerConfig, node_name: str | None = None,
                 worker: WorkerRole | None = None) -> MailServer:
    """The server for ``config``; ConfigurationError for anything it cannot build."""
    try:
        return MailServer(config, node_name, worker)
    except ConfigurationError:
        raise
    except OSError as exc:
        raise ConfigurationError(f"cannot prepare the data directory: {exc}") from None
