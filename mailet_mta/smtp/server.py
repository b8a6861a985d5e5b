"""The SMTP listener: connection limits, TLS wrapping, graceful shutdown.

``make_smtp_service(config, backend)`` returns a Twisted service listening on
``config.listen`` (an endpoint string). With ``implicit_tls`` every connection is
wrapped in TLS from the first byte (port 465). ``stopService`` stops listening, then
tells each session to close with ``421 4.3.2`` at its next command boundary, lets a
message being received or committed finish, and aborts what is left after
``SHUTDOWN_GRACE`` seconds.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from .. import metrics
from ..api import ConfigurationError
from ..flow.limits import ConnectionLimits
from .protocol import SMTPServerProtocol
from .relay_policy import RelayPolicy
from .replies import format_reply

log = Logger()

SHUTDOWN_GRACE = 10.0


class _RefuseProtocol(Protocol):
    """Answers ``421 4.7.0`` and hangs up (connection limits)."""

    def __init__(self, text: bytes):
        self._text = text

    def connectionMade(self):
        self.transport.write(self._text)
        self.transport.loseConnection()


class SMTPServerFactory(Factory):
    """Builds :class:`SMTPServerProtocol` sessions for one listener.

    ``tls_context`` (``mailet_mta.tls.server_context(config.tls)``) enables STARTTLS;
    with ``config.implicit_tls`` it marks sessions as already encrypted (the TLS
    wrapper itself is added by :func:`make_smtp_service`).
    """

    protocol = SMTPServerProtocol

    def __init__(self, config, backend, tls_context=None):
        self.config = config
        self.backend = backend
        self.tls_context = tls_context
        self.implicit_tls = bool(config.implicit_tls)
        self.policy = RelayPolicy(config)
        self.server_name = config.helo_name or backend.server_name
        self.sessions: set[SMTPServerProtocol] = set()
        self.limits = ConnectionLimits()
        self.stopping = False

    def buildProtocol(self, addr):
        ip = getattr(addr, "host", "")
        cfg = self.config
        metrics.connection("smtp", cfg.name)
        refusal = None
        if self.stopping:
            refusal = (421, "4.3.2", f"{self.server_name} Service shutting down")
        else:
            why = self.limits.refusal(ip, cfg)
            if why is not None:
                refusal = (421, "4.7.0",
                           f"{self.server_name} {why[:1].upper()}{why[1:]}, try later")
        if refusal is not None:
            p = _RefuseProtocol(format_reply(*refusal))
            p.factory = self
            return p
        p = self.protocol(self)
        p._ip_key = ip
        self.sessions.add(p)
        self.limits.opened(ip)
        return p

    def session_ended(self, proto) -> None:
        if proto in self.sessions:
            self.sessions.discard(proto)
            self.limits.closed(proto._ip_key)

    def close_sessions(self, reactor, grace: float = SHUTDOWN_GRACE) -> defer.Deferred:
        """Ask every session to close (421 at its next command boundary); the Deferred
        fires when all are gone or ``grace`` seconds passed (the rest are aborted)."""
        self.stopping = True
        sessions = list(self.sessions)
        waits = [p.closed for p in sessions if not p.closed.called]
        for p in sessions:
            p.shutdown()
        if not waits:
            return defer.succeed(None)
        done = defer.DeferredList(waits, consumeErrors=True)

        def force():
            for p in list(self.sessions):
                log.warn("aborting SMTP session from {ip} at shutdown", ip=p._ip_key)
                p.transport.abortConnection()
        timer = reactor.callLater(grace, force)
        done.addBoth(lambda r: timer.cancel() if timer.active() else None)
        return done


class SMTPService(service.Service):
    """Listens on ``config.listen``; ``port`` is the IListeningPort once bound and
    ``listening`` a Deferred firing with it (for ephemeral ports: ``tcp:0``)."""

    def __init__(self, config, factory: SMTPServerFactory, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.factory = factory
        self.reactor = reactor
        self.port = None
        self.listening = defer.Deferred()
        self.setName(f"smtp:{config.name}")

    def startService(self):
        super().startService()
        try:
            endpoint = endpoints.serverFromString(self.reactor, self.config.listen)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"smtpserver {self.config.name}: listen {self.config.listen!r} is not a "
                f"Twisted endpoint string ({exc}); write e.g. tcp:25:interface=0.0.0.0",
                self.config.source) from None
        factory = self.factory
        if self.config.implicit_tls and not self.config.listen.startswith("ssl:"):
            if factory.tls_context is None:
                raise ConfigurationError(f"smtpserver {self.config.name}: implicit TLS "
                                         f"needs a tls certificate", self.config.source)
            factory = TLSMemoryBIOFactory(factory.tls_context, False, factory)
        d = endpoint.listen(factory)

        def bound(port):
            self.port = port
            log.info("SMTP {name} listening on {addr}", name=self.config.name,
                     addr=port.getHost())
            return port
        d.addCallback(bound)
        d.chainDeferred(self.listening)
        return d

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self.port is not None:
            yield self.port.stopListening()
            self.port = None
        yield self.factory.close_sessions(self.reactor)


def make_smtp_service(config, backend, reactor=None) -> SMTPService:
    """The service for one ``smtpservers`` entry (TLS context built from config.tls)."""
    ctx = None
    if config.tls is not None:
        from ..tls import server_context
        ctx = server_context(config.tls)
    return SMTPService(config, SMTPServerFactory(config, backend, ctx), reactor)
