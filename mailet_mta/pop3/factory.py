"""The POP3 listener: protocol factory and the Twisted service that binds it."""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from ..listener import CountedSession, ListenerFactory, ListenerService, ListenerSettings
from .protocol import POP3Server

__all__ = ["POP3ServerFactory", "POP3Service", "make_pop3_service"]

log = Logger(namespace="mailet_mta.pop3")


class POP3ServerFactory(ListenerFactory):
    """Builds :class:`POP3Server` sessions for one listener over an
    :class:`~mailet_mta.mailstore.IMailStore` (``backend``).

    ``tls_context`` (a ``CertificateOptions``) enables STLS; ``clock`` is for tests.
    Sessions beyond ``config.connection_limit``, or beyond
    ``config.connection_limit_per_ip`` from one client address, get
    ``-ERR [SYS/TEMP]`` and are closed.
    """

    protocol = POP3Server

    def __init__(self, config, backend, tls_context=None, clock=None):
        super().__init__(config, backend, tls_context)
        self.clock = clock

    def buildProtocol(self, addr):
        proto = _CountedPOP3Server(self.config, self.backend, self.tls_context, self.clock)
        proto.factory = self
        proto._ip_key = getattr(addr, "host", "")
        return proto


class _CountedPOP3Server(CountedSession, POP3Server):
    refusal_reply = b"-ERR [SYS/TEMP] %s; try again later\r\n"
    metrics_kind = "pop3"


class POP3Service(ListenerService):
    """One ``pop3servers`` entry. ``listening`` fires once the mail store is warm too,
    so a login right after the start does not queue behind the warm-up's argon2 runs.
    STLS is offered only on a listener without implicit TLS."""

    kind = "pop3"
    default_port = 110
    _warm: defer.Deferred | None = None

    def startService(self):
        self._warm = defer.maybeDeferred(self.factory.backend.prepare)
        self._warm.addErrback(lambda f: log.failure(
            "POP3 {name}: warming up for the first login failed", f, name=self.config.name))
        return super().startService()

    def _ready(self, port):
        warm, self._warm = self._warm, None
        return port if warm is None else warm.addCallback(lambda _: port)

    def _apply(self, config, server_config, settings: ListenerSettings) -> None:
        self.factory.tls_context = None if config.implicit_tls else settings.tls_context


def make_pop3_service(config, backend, reactor=None) -> POP3Service:
    """An IService listening per ``config`` (a POP3ServerConfig) over the IMailStore
    ``backend``; ``service.listening`` fires with the IListeningPort and
    ``service.port`` holds the bound port number."""
    ctx = None
    if config.tls is not None:
        from ..tls import server_context
        ctx = server_context(config.tls)
    factory = POP3ServerFactory(config, backend, None if config.implicit_tls else ctx)
    return POP3Service(config, factory, reactor, tls_context=ctx)
