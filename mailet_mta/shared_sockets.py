"""Listening addresses shared by worker processes (``SO_REUSEPORT``).

With ``workers`` above 1 the supervisor binds the address of every listener of the
configuration once (:func:`reserve_address`, from the listener's Twisted endpoint
string; port 0 gets its port here), with ``SO_REUSEPORT`` and without listening on it.
Each worker inherits that socket, binds a socket of its own to the same address with
``SO_REUSEPORT``, listens and serves it (:func:`listen_on`). The kernel spreads new
connections over the workers' sockets by a hash of the client's address and port.

Why not one listening socket that every worker accepts from: measured with 16 clients
connecting together to two workers, the worker that woke first took most of them
(16 to 0, 14 to 2, 10 to 6 in five runs, even accepting one per turn of its reactor),
while per-worker sockets split them 6 to 10, 7 to 9 (docs/operations.md). The price:
connections waiting in the queue of a worker that dies are reset (the client tries
again), where a shared queue would have kept them.

Endpoints that can be shared: ``tcp:``, ``tcp6:`` and ``ssl:`` (the TLS wrapper is
added in the worker, as Twisted's own ``ssl:`` listener does).
"""

from __future__ import annotations

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


def _reusable_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def reserve_address(listen: str, what: str, source: str | None = None) -> socket.socket:
    """A socket bound (not listening) with SO_REUSEPORT to the address and port
    Twisted would bind for the endpoint string ``listen``: the workers bind theirs
    beside it. ConfigurationError for an endpoint that cannot be shared, OSError when
    the address cannot be bound."""
    endpoint = _parse(listen, what, source)
    # Twisted's server endpoints keep what they were given in these attributes.
    interface = endpoint._interface
    if isinstance(endpoint, endpoints.TCP6ServerEndpoint) and not interface:
        interface = "::"
    sock = _reusable_socket(socket.AF_INET6 if ":" in (interface or "") else socket.AF_INET)
    try:
        sock.bind((interface or "", endpoint._port))
    except OSError:
        sock.close()
        raise
    return sock


def listen_on(reactor, endpoint, factory, reserved_fd: int | None = None
              ) -> defer.Deferred:
    """``endpoint.listen(factory)``, or — given the supervisor's ``reserved_fd`` —
    the same listener on a socket of this process bound beside it (SO_REUSEPORT): a
    Deferred firing with the IListeningPort either way."""
    if reserved_fd is None:
        return endpoint.listen(factory)
    try:
        if isinstance(endpoint, endpoints.SSL4ServerEndpoint):
            factory = TLSMemoryBIOFactory(endpoint._sslContextFactory, False, factory)
        reserved = socket.socket(fileno=reserved_fd)
        own = _reusable_socket(reserved.family)
        try:
            own.bind(reserved.getsockname())
            own.listen(endpoint._backlog)
            own.setblocking(False)
            port = reactor.adoptStreamPort(own.fileno(), own.family, factory)
        finally:
            own.close()               # the port holds its own duplicate
            reserved.close()
    except Exception:  # noqa: BLE001 - reported through the Deferred, as listen() does
        return defer.fail()
    return defer.succeed(port)
