"""The ``webadmin`` listener: the admin HTTP API on ``twisted.web``.

Off unless ``webadmin.enabled`` is true; on the loopback address by default. With
``webadmin.https.enabled`` every connection is TLS with the certificate of its ``tls``
block (the same settings as the mail listeners). Requests carry a bearer token (see
:mod:`mailet_mta.admin.tokens`), checked on a reader thread; ``/healthcheck`` and
``/openapi.json`` need none. Routing is a plain table (:mod:`.http`), so the OpenAPI
document is generated from what is served; klein would add a dependency and a second
place where routes are declared.
"""

from __future__ import annotations

import json

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import server

from ..admin import tokens
from ..api import ConfigurationError
from ..config.webadmin import webadmin_config
from ..listener import CurrentCertificate
from ..shared_sockets import listen_on
from . import admin_api, openapi, schemas
from .http import BoundedRequest, Response, Route, Router

log = Logger(namespace="mailet_mta.webadmin")

REQUEST_TIMEOUT = 60          # seconds an idle or slow connection is kept


class WebAdminService(service.Service):
    """Serves the admin API of ``server`` on the configured endpoint."""

    name = "webadmin"

    def __init__(self, server, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.server = server
        self.config = config
        self.reactor = reactor
        self.listening_port = None
        self.shared_fd: int | None = None  # a socket shared by worker processes
        self.port: int | None = None
        self.listening: defer.Deferred = defer.Deferred()
        api = admin_api.AdminAPI(server, config.max_page_size)
        self.routes = admin_api.routes(api)
        self.document = openapi.document(self.routes, schemas.PROBLEM)
        self.routes.append(Route("GET", "/openapi.json", self.openapi, "This document",
                                 "meta", {200: ("the document", None)}, public=True))
        self.router = Router(self.routes, self.authorize, config.max_body_size)
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
            raise ConfigurationError(f"webadmin.listen {self.config.endpoint!r} is not a "
                                     f"Twisted endpoint string ({exc}); write e.g. "
                                     f"tcp:8000:interface=127.0.0.1",
                                     self.config.source) from None

    def authorize(self, token: str) -> defer.Deferred:
        """The name of ``token``, or None (looked up on a reader thread)."""
        return self.server.db.read(tokens.token_owner, token)

    def openapi(self, _call):
        return Response(200, raw=json.dumps(self.document).encode())

    def site(self) -> server.Site:
        request = type("WebAdminRequest", (BoundedRequest,),
                       {"max_body": self.config.max_body_size})
        site = server.Site(self.router, requestFactory=request, timeout=REQUEST_TIMEOUT)
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
            log.info("webadmin listening on {addr} ({scheme})", addr=port.getHost(),
                     scheme="https" if self.tls_context is not None else "http")
            return port

        def failed(failure):
            log.error("webadmin could not listen on {listen}: {error}",
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


def webadmin_listen(config) -> str | None:
    """The endpoint string of the webadmin listener, or None when it is off (what a
    supervisor opens for its worker processes)."""
    cfg = webadmin_config(config)
    return cfg.endpoint if cfg.enabled else None


def webadmin_service(config, server) -> WebAdminService | None:
    """The webadmin listener of ``server`` when ``webadmin.enabled`` is true."""
    cfg = webadmin_config(config)
    if not cfg.enabled:
        return None
    return WebAdminService(server, cfg)
