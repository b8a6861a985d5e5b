"""Replies sent at once: one ``send()`` instead of a round through the reactor.

Twisted's ``transport.write`` buffers the bytes, registers the socket for writing
(``epoll_ctl``), sends on the next reactor turn and unregisters it (``epoll_ctl``
again): three system calls and a turn for a reply of a few dozen octets, four
replies a mail. :func:`send_now` sends on the spot when the transport is a plain TCP
connection with nothing waiting in its buffer; whatever the socket does not take
(and everything on any other transport: TLS, a test transport) goes through
``transport.write`` as before, so the order of the bytes and back-pressure are kept.
"""

from __future__ import annotations

from twisted.internet import tcp

_PLAIN_TCP = (tcp.Server, tcp.Client)


def send_now(transport, data: bytes) -> None:
    """Write ``data`` to ``transport``, sending it now when nothing is queued before it."""
    if (type(transport) in _PLAIN_TCP and not transport.TLS and transport.connected
            and not transport.disconnecting and not transport._writeDisconnected
            and not transport._tempDataBuffer
            and transport.offset == len(transport.dataBuffer)):
        try:
            sent = transport.socket.send(data)
        except OSError:     # EAGAIN, or a lost connection: transport.write finds out
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
