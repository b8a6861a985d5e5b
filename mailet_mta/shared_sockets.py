"""Listening sockets opened once and shared by worker processes.

With ``workers`` above 1 the supervisor binds every listener of the configuration
(:func:`open_listening_socket`, from the listener's Twisted endpoint string) before it
starts any worker; each worker inherits the descriptors and adopts them
(:func:`listen_on`, ``reactor.adoptStreamPort``) instead of binding. All workers then
accept from one kernel queue: an idle worker takes the next connection, and connections
waiting in the queue survive the death of any one worker.

Endpoints that can be shared: ``tcp:``, ``tcp6:`` and ``ssl:`` (the TLS wrapper is
added in the worker, as Twisted's own ``ssl:`` listener does).
"""

from __future__ import annotations

import os
import socket

from twisted.internet import defer, endpoints
from twisted.protocols.tls import TLSMemoryBIOFactory

from .api import ConfigurationError

SHAREABLE = "tcp:, tcp6: or ssl:"


def _parse(listen: str, what: str, source: str | None):
    from twisted.internet import reactor

    try:
        endpoint = endpoints.serverFromString(reactor, listen)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{what}: listen {listen!r} is not a Twisted endpoint "
                                 f"string ({exc})", source) from None
    if not isinstance(endpoint, (endpoints.TCP4ServerEndpoint, endpoints.TCP6ServerEndpoint,
                                 endpoints.SSL4ServerEndpoint)):
        raise ConfigurationError(f"{what}: listen {listen!r} cannot be shared by worker "
                                 f"processes (use {SHAREABLE}, or workers: 1)", source)
    return endpoint


def open_listening_socket(listen: str, what: str, source: str | None = None
                          ) -> socket.socket:
    """A bound, listening, non-blocking socket for the endpoint string ``listen``
    (the address, port and backlog Twisted would use); ConfigurationError for an
    endpoint that cannot be shared, OSError when the address cannot be bound."""
    endpoint = _parse(listen, what, source)
    # Twisted's server endpoints keep what they were given in these attributes.
    port, backlog = endpoint._port, endpoint._backlog
    interface = endpoint._interface
    if isinstance(endpoint, endpoints.TCP6ServerEndpoint) and not interface:
        interface = "::"
    family = socket.AF_INET6 if ":" in (interface or "") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface or "", port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listen_on(reactor, endpoint, factory, adopted_fd: int | None = None
              ) -> defer.Deferred:
    """``endpoint.listen(factory)``, or — with ``adopted_fd`` — the same listener on the
    inherited socket: a Deferred firing with the IListeningPort either way."""
    if adopted_fd is None:
        return endpoint.listen(factory)
    try:
        if isinstance(endpoint, endpoints.SSL4ServerEndpoint):
            factory = TLSMemoryBIOFactory(endpoint._sslContextFactory, False, factory)
        probe = socket.socket(fileno=os.dup(adopted_fd))
        family = probe.family
        probe.close()
        port = reactor.adoptStreamPort(adopted_fd, family, factory)
    except Exception:  # noqa: BLE001 - reported through the Deferred, as listen() does
        return defer.fail()
    os.close(adopted_fd)          # the port holds its own duplicate
    return defer.succeed(port)
