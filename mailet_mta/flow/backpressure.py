"""Stop reading from a peer while its replies wait to be sent.

A session registers a :class:`FlowControl` as the streaming producer of its transport
for the whole connection (Twisted producer/consumer). The transport pauses it when its
outgoing buffer holds more than ``bufferSize`` octets (64 KiB in
``twisted.internet.abstract.FileDescriptor``) and resumes it once that buffer has been
written out. Under TLS, ``TLSMemoryBIOProtocol`` passes the same events on (through its
producer membrane), and also pauses while it holds application data of its own before
the handshake is done; after STARTTLS, Twisted moves the registered producer onto the
TLS layer by itself.

While paused, a session handles no further command (each would add a reply) and, as
soon as it holds unhandled input, stops reading (``transport.pauseProducing``). A peer
that sends and never reads therefore costs one outgoing buffer and one received chunk,
nothing arrives from it any more, and its idle timeout runs out.

Reading is not stopped merely because the outgoing buffer is full while nothing waits
in the input: the TLS handshake that unblocks a buffered greeting has to be read.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["FlowControl", "COMMANDS_PER_TURN"]

# Pipelined commands handled before the session yields to the reactor: one read of
# 64 KiB can hold thousands of them, and other connections wait while they are run.
COMMANDS_PER_TURN = 32


@implementer(IPushProducer)
class FlowControl:
    """The producer side of one session: whether its replies may be written now, and
    whether its transport is reading.

    ``on_drained`` is called when the transport's outgoing buffer has drained after a
    pause (the session handles the commands it held and streams what it was sending).
    """

    def __init__(self, on_drained: Callable[[], None]):
        self.blocked = False
        self._on_drained = on_drained
        self._transport = None
        self._reading_paused = False

    # -- the session's side --------------------------------------------------------
    def start(self, transport) -> None:
        """Register with ``transport`` (in ``connectionMade``)."""
        self._transport = transport
        transport.registerProducer(self, True)

    def stop(self) -> None:
        """Unregister before ``loseConnection``: a transport with a registered producer
        waits for it before it closes."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.unregisterProducer()

    def write_now(self, transport, data: bytes) -> None:
        """Write ``data`` to ``transport`` and hand it to the socket in this call.

        A TCP transport only buffers a write and sends it when the reactor next polls,
        after registering the socket as writable: a reactor iteration per reply. Here
        the transport's ``doWrite`` (its IWriteDescriptor method) sends it at once,
        unless the write took the transport's buffer over its bound (the transport
        paused this producer: the bytes wait for the reactor as before) or the
        transport is closing (its ``doWrite`` would finish the close, which is the
        reactor's to do). On a send error ``doWrite`` returns it, the socket stays
        registered and the reactor meets the same error at its next poll. Under TLS
        the TLS layer passes ``doWrite`` on to the TCP transport its records were
        written to. A transport without one writes as before.
        """
        transport.write(data)
        flush = getattr(transport, "doWrite", None)
        closing = getattr(transport, "disconnecting", False)
        if flush is not None and not self.blocked and not closing:
            flush()

    def send_now(self, transport, data: bytes) -> None:
        """Hand ``data`` to the socket in this call, with one ``send`` when possible.

        A plain TCP transport that holds nothing (no TLS, nothing queued, not closing,
        this flow not blocked) gets it with one ``send`` on its socket: Twisted's
        ``write`` would register the socket as writable for the reactor and its
        ``doWrite`` remove it again, two ``epoll_ctl`` and their bookkeeping for each
        reply. What the socket does not take, or all of it when the send fails, is
        written to the transport as before: the reactor sends it (or meets the same
        error) at its next poll. Any other transport gets :meth:`write_now`.
        """
        if (not isinstance(transport, tcp.Connection) or transport.TLS
                or self.blocked or not transport.connected
                or transport.disconnecting or transport.dataBuffer
                or getattr(transport, "_tempDataBuffer", True)):
            self.write_now(transport, data)
            return
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0
        if sent < len(data):
            transport.write(data[sent:])

    def hold_input(self, hold: bool) -> None:
        """Stop (``True``) or resume (``False``) reading; only changes cost a call."""
        if hold == self._reading_paused or self._transport is None:
            return
        self._reading_paused = hold
        if hold:
            self._transport.pauseProducing()
        else:
            self._transport.resumeProducing()

    # -- IPushProducer: called by the transport --------------------------------------
    def pauseProducing(self) -> None:
        self.blocked = True

    def resumeProducing(self) -> None:
        if self.blocked and self._transport is not None:
            self.blocked = False
            self._on_drained()

    def stopProducing(self) -> None:
        self.blocked = True
        self._transport = None
