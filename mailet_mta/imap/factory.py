"""The IMAP listener: protocol factory and the Twisted service that binds it."""

from __future__ import annotations

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ..listener import CountedSession, ListenerFactory, ListenerService, ListenerSettings
from ..mail import MimeLimits
from .mime import DEFAULT_LIMITS
from .protocol import IMAPServer

__all__ = ["IMAPServerFactory", "IMAPService", "make_imap_service", "RENDER_THREADS"]

log = Logger(namespace="mailet_mta.imap")

# FETCH rendering and SEARCH matching (MIME parses) run here, off the reactor. Two
# threads, as for the mailet workers: more would only take turns at the same GIL.
RENDER_THREADS = 2


class IMAPServerFactory(ListenerFactory):
    """Builds :class:`IMAPServer` sessions for one listener over an
    :class:`~mailet_mta.mailstore.IMailStore` (``backend``).

    ``tls_context`` enables STARTTLS; ``clock`` and ``run`` are for tests (``run``
    replaces the render threads); ``mime_limits`` bound the sessions' MIME parses.
    Sessions beyond ``config.connection_limit``, or
    beyond ``config.connection_limit_per_ip`` from one client address, get
    ``* BYE [UNAVAILABLE]`` and are closed.
    """

    protocol = IMAPServer

    def __init__(self, config, backend, tls_context=None, clock=None, run=None,
                 reactor=None, mime_limits: MimeLimits = DEFAULT_LIMITS):
        super().__init__(config, backend, tls_context)
        self.mime_limits = mime_limits
        self.clock = clock
        self.reactor = reactor
        self._run = run
        self._pool: ThreadPool | None = None

    def run_in_worker(self, fn, *args) -> defer.Deferred:
        """``fn(*args)`` on one of the render threads."""
        if self._run is not None:
            return self._run(fn, *args)
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=RENDER_THREADS,
                                    name=f"imap-render-{self.config.name}")
            self._pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", self.stop_workers)
        return threads.deferToThreadPool(reactor, self._pool, fn, *args)

    def stop_workers(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def buildProtocol(self, addr):
        proto = _CountedIMAPServer(self.config, self.backend, self.tls_context,
                                   self.clock, self.run_in_worker)
        proto.factory = self
        proto.mime_limits = self.mime_limits
        proto._ip_key = getattr(addr, "host", "")
        return proto


class _CountedIMAPServer(CountedSession, IMAPServer):
    refusal_reply = b"* BYE [UNAVAILABLE] %s; try again later\r\n"
    metrics_kind = "imap"


class IMAPService(ListenerService):
    """One ``imapservers`` entry. ``listening`` fires once the mail store is warm too.
    STARTTLS is offered only on a listener without implicit TLS."""

    kind = "imap"
    default_port = 143
    _warm: defer.Deferred | None = None

    def startService(self):
        self._warm = defer.maybeDeferred(self.factory.backend.prepare)
        self._warm.addErrback(lambda f: log.failure(
            "IMAP {name}: warming up for the first login failed", f, name=self.config.name))
        return super().startService()

    def _ready(self, port):
        warm, self._warm = self._warm, None
        return port if warm is None else warm.addCallback(lambda _: port)

    @defer.inlineCallbacks
    def stopService(self):
        yield super().stopService()
        self.factory.stop_workers()

    def _apply(self, config, server_config, settings: ListenerSettings) -> None:
        self.factory.tls_context = None if config.implicit_tls else settings.tls_context


def make_imap_service(config, backend, reactor=None,
                      mime_limits: MimeLimits = DEFAULT_LIMITS) -> IMAPService:
    """An IService listening per ``config`` (an IMAPServerConfig) over the IMailStore
    ``backend``; ``service.listening`` fires with the IListeningPort and
    ``service.port`` holds the bound port number. ``mime_limits`` bound the MIME
    parses of FETCH and SEARCH (the spool manager's maxMimeParts and maxMimeDepth)."""
    ctx = None
    if config.tls is not None:
        from ..tls import server_context
        ctx = server_context(config.tls)
    factory = IMAPServerFactory(config, backend, None if config.implicit_tls else ctx,
                                reactor=reactor, mime_limits=mime_limits)
    return IMAPService(config, factory, reactor, tls_context=ctx)
