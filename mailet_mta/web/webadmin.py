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

from twisted.internet import defer

from ..admin import tokens
from ..config.webadmin import webadmin_config
from . import admin_api, openapi, schemas
from .host_check import host_check
from .http import Response, Route, Router
from .listener import HTTPListenerService


class WebAdminService(HTTPListenerService):
    """Serves the admin API of ``server`` on the configured endpoint."""

    name = "webadmin"

    def __init__(self, server, config, reactor=None):
        super().__init__(config, reactor)
        self.server = server
        api = admin_api.AdminAPI(server, config.max_page_size)
        self.routes = admin_api.routes(api)
        self.document = openapi.document(self.routes, schemas.PROBLEM)
        self.routes.append(Route("GET", "/openapi.json", self.openapi, "This document",
                                 "meta", {200: ("the document", None)}, public=True))
        self.router = self.root = Router(self.routes, self.authorize, config.max_body_size,
                                         host_check(config, server.config))

    def authorize(self, token: str) -> defer.Deferred:
        """The name of ``token``, or None (looked up on a reader thread)."""
        return self.server.db.read(tokens.token_owner, token)

    def openapi(self, _call):
        return Response(200, raw=json.dumps(self.document).encode())


def webadmin_service(config, server) -> WebAdminService | None:
    """The webadmin listener of ``server`` when ``webadmin.enabled`` is true."""
    cfg = webadmin_config(config)
    if not cfg.enabled:
        return None
    return WebAdminService(server, cfg)
