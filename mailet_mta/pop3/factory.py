"""The POP3 listener: protocol factory and the Twisted service that binds it."""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from .. import metrics
from ..flow.limits import ConnectionLimits
from .protocol import POP3Server

__all__ = ["POP3ServerFactory", "POP3Service", "make_pop3_service"]

log = Logger(namespace="mailet_mta.pop3")


class POP3ServerFactory(ServerFactory):
    """Builds :class:`POP3Server` sessions for one listener.

    ``tls_context`` (a ``CertificateOptions``) enables STLS; ``clock`` is for tests.
    Sessions beyond ``config.connection_limit``, or beyond
    ``config.connection_limit_per_ip`` from one client address, get
    ``-ERR [SYS/TEMP]`` and are closed.
    """

    protocol = POP3Server

    def __init__(self, config, backend, tls_context=None, clock=None):
        self.config = config
        self.backend = backend
        self.tls_context = tls_context
        self.clock = clock
        self.sessions: set = set()
        self.limits = ConnectionLimits()

    def buildProtocol(self, addr):
        proto = _CountedPOP3Server(self.config, self.backend, self.tls_context, self.clock)
        proto.factory = self
        proto._ip_key = getattr(addr, "host", "")
        return proto


class _CountedPOP3Server(POP3Server):
    def connectionMade(self) -> None:
        factory = self.factory
        metrics.connection("pop3", factory.config.name)
        why = factory.limits.refusal(self._ip_key, factory.config)
        if why is not None:
            self.transport.write(b"-ERR [SYS/TEMP] %s; try again later\r\n"
                                 % why.encode("ascii", "replace"))
            self._closing = True
            self.transport.loseConnection()
            return
        factory.sessions.add(self)
        factory.limits.opened(self._ip_key)
        super().connectionMade()

    def connectionLost(self, reason=None) -> None:
        if self in self.factory.sessions:
            self.factory.sessions.discard(self)
            self.factory.limits.closed(self._ip_key)
        super().connectionLost(reason)


class POP3Service(service.Service):
    """Listens on ``config.listen``; ``port`` is the bound port once started."""

    def __init__(self, config, backend, reactor=None):
        self.config = config
        self.backend = backend
        self._reactor = reactor
        self.listening_port = None
        self.port: int | None = None
        self.factory: POP3ServerFactory | None = None
        self.name = f"pop3:{config.name}"

    def _tls_context(self):
        if self.config.tls is None:
            return None
        from ..tls import server_context

        return server_context(self.config.tls)

    @defer.inlineCallbacks
    def _listen(self):
        from twisted.internet import reactor as default_reactor

        reactor = self._reactor or default_reactor
        tls = self._tls_context()
        implicit = self.config.implicit_tls
        self.factory = POP3ServerFactory(self.config, self.backend,
                                         None if implicit else tls)
        factory = self.factory
        listen = self.config.listen
        if implicit and not listen.startswith("ssl:"):
            if tls is None:
                from ..api import ConfigurationError

                raise ConfigurationError(
                    f"pop3server {self.config.name}: implicitTLS needs a tls certificate",
                    self.config.source)
            factory = TLSMemoryBIOFactory(tls, False, factory)
        endpoint = endpoints.serverFromString(reactor, listen)
        self.listening_port = yield endpoint.listen(factory)
        self.port = self.listening_port.getHost().port
        log.info("POP3 {name} listening on port {port}", name=self.config.name,
                 port=self.port)
        return self.port

    def startService(self) -> None:
        super().startService()
        warm = self.backend.prepare()
        warm.addErrback(lambda f: log.failure(
            "POP3 {name}: warming up for the first login failed", f, name=self.config.name))
        self.started = self._listen()
        self.started.addErrback(self._failed)
        # Reported as listening (listeners.json) once warm: a login right after the
        # start does not queue behind the warm-up's two argon2 runs.
        self.listening = defer.Deferred()

        def listening(port):
            warm.addCallback(lambda _: self.listening.callback(self.listening_port))
            return port

        def not_listening(failure):
            self.listening.errback(failure)
            return failure

        self.started.addCallbacks(listening, not_listening)

    def _failed(self, failure):
        log.error("POP3 {name} could not listen on {listen}: {error}", name=self.config.name,
                  listen=self.config.listen, error=failure.getErrorMessage())
        return failure

    def stopService(self):
        super().stopService()
        port, self.listening_port = self.listening_port, None
        sessions = list(self.factory.sessions) if self.factory else []
        for session in sessions:
            session.close()
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return defer.succeed(None)


def make_pop3_service(config, backend, reactor=None) -> POP3Service:
    """An IService listening per ``config`` (a POP3ServerConfig); after start,
    ``service.started`` fires with the bound port and ``service.port`` holds it."""
    return POP3Service(config, backend, reactor)
