"""What every listener (SMTP, POP3, later IMAP) shares: the service that binds an
endpoint, the factory that counts sessions, and the TLS context it owns.

The same names everywhere: ``listening_port`` is the IListeningPort, ``port`` the bound
port number, ``listening`` a Deferred firing with the IListeningPort once the listener
takes connections, ``factory.sessions`` the open sessions, ``factory.limits`` their
:class:`~mailet_mta.flow.limits.ConnectionLimits`, ``tls_context`` the listener's
certificate (None without one), ``shared_fd`` the address a worker process shares
with the others (:mod:`mailet_mta.shared_sockets`). ``reconfigure``
applies a reloaded listener configuration — limits, timeouts, policy and certificate —
to new sessions; sessions already open keep what they started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from OpenSSL.SSL import Connection
from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from . import metrics
from .api import ConfigurationError
from .flow.limits import ConnectionLimits
from .shared_sockets import listen_on

__all__ = ["ListenerFactory", "ListenerService", "ListenerSettings", "CurrentCertificate",
           "CountedSession"]

log = Logger(namespace="mailet_mta.listener")


@implementer(IOpenSSLServerConnectionCreator)
class CurrentCertificate:
    """The TLS wrapper's connection creator for an implicit-TLS listener: each new
    connection uses the listener's certificate of the moment, so a reload swaps it
    without rebuilding the listening port."""

    def __init__(self, options):
        self.options = options

    def serverConnectionForTLS(self, _protocol) -> Connection:
        return Connection(self.options.getContext(), None)


@dataclass
class ListenerSettings:
    """What a listener builds from its configuration before it applies it: the TLS
    context (None without a certificate) and protocol-specific parts (``extra``)."""

    tls_context: object | None
    extra: dict = field(default_factory=dict)


class ListenerFactory(Factory):
    """Builds the sessions of one listener and counts them, in total and per client
    address (James's ``connectionLimit``/``connectionLimitPerIP``)."""

    def __init__(self, config, backend, tls_context=None):
        self.config = config
        self.backend = backend
        self.tls_context = tls_context
        self.sessions: set = set()
        self.limits = ConnectionLimits()
        self.metric_labels: tuple[str, str] | None = None   # (protocol, listener name)

    def refusal(self, ip: str) -> str | None:
        """Why a new session from ``ip`` is refused now (None: it is admitted)."""
        return self.limits.refusal(ip, self.config)

    def session_started(self, session, ip: str) -> None:
        session._ip_key = ip
        self.sessions.add(session)
        self.limits.opened(ip)
        if self.metric_labels is not None:
            metrics.session_opened(*self.metric_labels)

    def session_ended(self, session) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.limits.closed(session._ip_key)
            if self.metric_labels is not None:
                metrics.session_closed(*self.metric_labels)


class CountedSession:
    """Mixed into a listener's protocol class (before it): the session is counted by
    its factory, and refused with ``refusal_reply % reason`` when over the limits.
    The factory sets ``factory`` and ``_ip_key`` (the client address) on it."""

    refusal_reply = b"%s\r\n"
    metrics_kind = "listener"

    def connectionMade(self) -> None:
        from . import metrics

        factory = self.factory
        metrics.connection(self.metrics_kind, factory.config.name)
        why = factory.refusal(self._ip_key)
        if why is not None:
            self.transport.write(self.refusal_reply % why.encode("ascii", "replace"))
            self._closing = True
            self.transport.loseConnection()
            return
        factory.session_started(self, self._ip_key)
        super().connectionMade()

    def connectionLost(self, reason=None) -> None:
        self.factory.session_ended(self)
        super().connectionLost(reason)


class ListenerService(service.Service):
    """Binds ``config.listen`` (a Twisted endpoint string) for a ListenerFactory.

    With ``config.implicit_tls`` on a plain endpoint, every connection is wrapped in
    TLS from the first byte with the listener's certificate. Subclasses set ``kind``
    (``smtp``, ``pop3``: the configuration section is ``<kind>server``) and may
    override :meth:`_settings`, :meth:`_apply`, :meth:`_ready` and
    :meth:`_close_sessions`.
    """

    kind = "listener"
    default_port = 0          # the protocol's port, for examples in error messages

    def __init__(self, config, factory: ListenerFactory, reactor=None, tls_context=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.factory = factory
        self.reactor = reactor
        self.tls_context = tls_context if tls_context is not None else factory.tls_context
        self._tls_creator = None
        self.listening_port = None
        self.port: int | None = None
        self.listening: defer.Deferred = defer.Deferred()
        self.shared_fd: int | None = None  # a socket shared by worker processes
        factory.metric_labels = (self.kind, config.name)
        self.setName(f"{self.kind}:{config.name}")

    # -- start and stop -------------------------------------------------------------------
    def startService(self):
        """Bind the endpoint. A listen string that is no endpoint, or implicit TLS
        without a certificate, raises ConfigurationError at once; a failure to bind
        fails ``listening``."""
        super().startService()
        endpoint, factory = self._endpoint()
        d = listen_on(self.reactor, endpoint, factory, self.shared_fd)
        d.addCallback(self._bound)
        d.addCallbacks(self._ready, self._failed)
        d.chainDeferred(self.listening)
        return self.listening

    def _endpoint(self):
        """(the server endpoint, the factory to listen with: TLS-wrapped or not)."""
        cfg = self.config
        try:
            endpoint = endpoints.serverFromString(self.reactor, cfg.listen)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{self.kind}server {cfg.name}: listen {cfg.listen!r} is not a Twisted "
                f"endpoint string ({exc}); write e.g. tcp:{self.default_port}:"
                f"interface=0.0.0.0", cfg.source) from None
        factory = self.factory
        if cfg.implicit_tls and not cfg.listen.startswith("ssl:"):
            if self.tls_context is None:
                raise ConfigurationError(f"{self.kind}server {cfg.name}: implicitTLS needs "
                                         f"a tls certificate", cfg.source)
            self._tls_creator = CurrentCertificate(self.tls_context)
            factory = TLSMemoryBIOFactory(self._tls_creator, False, factory)
        return endpoint, factory

    def _bound(self, port):
        self.listening_port = port
        self.port = port.getHost().port
        log.info("{kind} {name} listening on {addr}", kind=self.kind.upper(),
                 name=self.config.name, addr=port.getHost())
        return port

    def _ready(self, port):
        """The listener takes connections: the result of ``listening``."""
        return port

    def _failed(self, failure):
        log.error("{kind} {name} could not listen on {listen}: {error}",
                  kind=self.kind.upper(), name=self.config.name, listen=self.config.listen,
                  error=failure.getErrorMessage())
        return failure

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        port, self.listening_port = self.listening_port, None
        if port is not None:
            yield port.stopListening()
        yield self._close_sessions()

    def _close_sessions(self) -> defer.Deferred:
        for session in list(self.factory.sessions):
            session.close()
        return defer.succeed(None)

    # -- reload ---------------------------------------------------------------------------
    def prepare(self, config) -> ListenerSettings:
        """Build what ``config`` needs (its TLS context…) without applying anything;
        ConfigurationError (naming the file and line) when it cannot be built."""
        from .tls import server_context

        context = server_context(config.tls) if config.tls is not None else None
        if config.implicit_tls and context is None:
            raise ConfigurationError(f"{self.kind}server {config.name}: implicitTLS needs a "
                                     f"tls certificate", config.source)
        return ListenerSettings(context, self._settings(config))

    def _settings(self, config) -> dict:
        """The protocol-specific parts of :meth:`prepare`."""
        return {}

    def reconfigure(self, config, server_config=None,
                    prepared: ListenerSettings | None = None) -> None:
        """Apply a reloaded ``config`` of this listener (``prepared`` from
        :meth:`prepare`, else built now) to the sessions that start from now on. The
        endpoint stays the one bound at start (moving it needs a restart)."""
        settings = prepared if prepared is not None else self.prepare(config)
        self.config = config
        self.factory.config = config
        self.tls_context = settings.tls_context
        if self._tls_creator is not None and settings.tls_context is not None:
            self._tls_creator.options = settings.tls_context
        elif config.listen.startswith("ssl:") and self.running:
            log.warn("{kind} {name}: the certificate of an ssl: endpoint is the one in its "
                     "listen string; a new one is used at the next restart",
                     kind=self.kind.upper(), name=config.name)
        self._apply(config, server_config, settings)

    def _apply(self, config, server_config, settings: ListenerSettings) -> None:
        """The protocol-specific parts of :meth:`reconfigure` (must not fail)."""
        self.factory.tls_context = settings.tls_context
