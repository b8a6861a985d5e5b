"""The SMTP listener: connection limits, TLS wrapping, graceful shutdown.

``make_smtp_service(config, backend)`` returns a Twisted service listening on
``config.listen`` (an endpoint string). With ``implicit_tls`` every connection is
wrapped in TLS from the first byte (port 465). ``stopService`` stops listening, then
tells each session to close with ``421 4.3.2`` at its next command boundary, lets a
message being received or committed finish, and aborts what is left after
``SHUTDOWN_GRACE`` seconds. The listener's parts shared with POP3 are in
:mod:`mailet_mta.listener`.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from .. import metrics
from ..listener import ListenerFactory, ListenerService, ListenerSettings
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


class SMTPServerFactory(ListenerFactory):
    """Builds :class:`SMTPServerProtocol` sessions for one listener.

    ``tls_context`` (``mailet_mta.tls.server_context(config.tls)``) enables STARTTLS;
    with ``config.implicit_tls`` it marks sessions as already encrypted (the TLS
    wrapper itself is added by :func:`make_smtp_service`).
    """

    protocol = SMTPServerProtocol

    def __init__(self, config, backend, tls_context=None):
        super().__init__(config, backend, tls_context)
        self.implicit_tls = bool(config.implicit_tls)
        self.policy = RelayPolicy(config)
        self.server_name = config.helo_name or backend.server_name
        self.stopping = False

    def buildProtocol(self, addr):
        ip = getattr(addr, "host", "")
        cfg = self.config
        metrics.connection("smtp", cfg.name)
        refusal = None
        if self.stopping:
            refusal = (421, "4.3.2", f"{self.server_name} Service shutting down")
        else:
            why = self.refusal(ip)
            if why is not None:
                refusal = (421, "4.7.0",
                           f"{self.server_name} {why[:1].upper()}{why[1:]}, try later")
        if refusal is not None:
            p = _RefuseProtocol(format_reply(*refusal))
            p.factory = self
            return p
        p = self.protocol(self)
        self.session_started(p, ip)
        return p

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


class SMTPService(ListenerService):
    """One ``smtpservers`` entry: a :class:`~mailet_mta.listener.ListenerService` whose
    reload also applies the relay policy and the host name."""

    kind = "smtp"
    default_port = 25

    def _settings(self, config) -> dict:
        return {"policy": RelayPolicy(config)}    # ConfigurationError for a bad policy

    def _apply(self, config, server_config, settings: ListenerSettings) -> None:
        factory = self.factory
        factory.tls_context = settings.tls_context
        factory.policy = settings.extra["policy"]
        name = config.helo_name or (server_config.server_name if server_config is not None
                                    else factory.backend.server_name)
        factory.server_name = name
        if hasattr(factory.backend, "server_name"):
            factory.backend.server_name = name

    def _close_sessions(self) -> defer.Deferred:
        return self.factory.close_sessions(self.reactor)


def make_smtp_service(config, backend, reactor=None) -> SMTPService:
    """The service for one ``smtpservers`` entry (TLS context built from config.tls)."""
    ctx = None
    if config.tls is not None:
        from ..tls import server_context
        ctx = server_context(config.tls)
    return SMTPService(config, SMTPServerFactory(config, backend, ctx), reactor)
