"""One HTTP listener on ``twisted.web``: endpoint, optional TLS, bounded request bodies.

:class:`HTTPListenerService` is what the admin API and the web mail share: it binds
the configured endpoint string, wraps every connection in TLS with the certificate of
the section's ``tls`` block when ``https.enabled``, serves ``self.root`` with requests
whose bodies are counted and cut past ``max_body_size`` (:class:`.http.BoundedRequest`),
and fires ``listening`` with the bound port.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import server

from ..api import ConfigurationError
from ..listener import CurrentCertificate
from ..shared_sockets import listen_on
from .http import BoundedRequest

log = Logger(namespace="mailet_mta.web")

REQUEST_TIMEOUT = 60          # seconds an idle or slow connection is kept


class HTTPListenerService(service.Service):
    """Serves ``self.root`` (set by the subclass) on ``config.endpoint``."""

    name = "http"
    root = None
    parse_forms = True            # twisted.web parses POSTed forms into request.args

    def __init__(self, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.listening_port = None
        self.shared_fd: int | None = None  # a socket shared by worker processes
        self.port: int | None = None
        self.listening: defer.Deferred = defer.Deferred()
        self.tls_context = self._tls_context()
        self.endpoint = self._endpoint()

    def _tls_context(self):
        from ..tls import server_context

        cfg = self.config
        return server_context(cfg.tls) if cfg.https_enabled and cfg.tls else None

    def _endpoint(self):
        try:
            return endpoints.serverFromString(self.reactor, self.config.endpoint)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{self.name}.listen {self.config.endpoint!r} is not "
                                     f"a Twisted endpoint string ({exc}); write e.g. "
                                     f"tcp:8000:interface=127.0.0.1",
                                     self.config.source) from None

    def site(self) -> server.Site:
        request = type(f"{self.name.title()}Request", (BoundedRequest,),
                       {"max_body": self.config.max_body_size})
        try:
            # Twisted 25.5 and later can leave POSTed forms unparsed (the handler
            # parses them off the reactor); older ones parse them, which is harmless.
            options = {} if self.parse_forms else {"parsePOSTFormSubmission": False}
            site = server.Site(self.root, requestFactory=request, timeout=REQUEST_TIMEOUT,
                               **options)
        except TypeError:
            site = server.Site(self.root, requestFactory=request, timeout=REQUEST_TIMEOUT)
        site.noisy = False
        site.displayTracebacks = False
        return site

    def startService(self):
        super().startService()
        factory = self.site()
        if self.tls_context is not None:
            factory = TLSMemoryBIOFactory(CurrentCertificate(self.tls_context), False,
                                          factory)
        d = listen_on(self.reactor, self.endpoint, factory, self.shared_fd)

        def bound(port):
            self.listening_port = port
            self.port = port.getHost().port
            log.info("{name} listening on {addr} ({scheme})", name=self.name,
                     addr=port.getHost(),
                     scheme="https" if self.tls_context is not None else "http")
            return port

        def failed(failure):
            log.error("{name} could not listen on {listen}: {error}", name=self.name,
                      listen=self.config.endpoint, error=failure.getErrorMessage())
            return failure

        d.addCallbacks(bound, failed)
        d.chainDeferred(self.listening)
        return self.listening

    def stopService(self):
        super().stopService()
        port, self.listening_port = self.listening_port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return defer.succeed(None)
