"""Next hops that attack the outbound client, for tests on loopback.

:class:`HostileNextHop` greets like a normal server, then answers EHLO in one of two
hostile ways: ``endless`` streams ``250-`` continuation lines as fast as the client
reads them and never ends the reply; ``trickle`` sends one byte of a never-ending
continuation every ``interval`` seconds. It records how many octets it wrote and when
the client closed the connection. Every stream stops when the connection closes, and
at ``limit`` octets in any case.
"""

from __future__ import annotations

import time

from twisted.internet import interfaces, protocol, reactor, task
from zope.interface import implementer

LINE = b"250-" + b"x" * 70 + b"\r\n"


class HostileNextHop(protocol.Factory):
    """Configure with ``mode`` (endless | trickle); ``listen()`` it on 127.0.0.1:0."""

    def __init__(self, mode: str, interval: float = 0.2, limit: int = 512 * 1024 * 1024):
        self.mode = mode
        self.interval = interval
        self.limit = limit
        self.connections = 0
        self.written = 0               # octets written on all connections
        self.closed_after: list[float] = []   # seconds from EHLO to the close
        self.commands: list[str] = []

    def buildProtocol(self, addr):
        self.connections += 1
        return _HostileProtocol(self)


@implementer(interfaces.IPullProducer)
class _HostileProtocol(protocol.Protocol):
    def __init__(self, factory: HostileNextHop):
        self.f = factory
        self.started = None
        self.loop = None
        self.open = True
        self.buffer = b""

    def connectionMade(self):
        self.transport.write(b"220 hostile.test ESMTP\r\n")

    def dataReceived(self, data: bytes):
        self.buffer += data
        while b"\r\n" in self.buffer and self.started is None:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self.f.commands.append(line.decode("ascii", "replace"))
            if line.upper().startswith(b"EHLO"):
                self._attack()

    def _attack(self):
        self.started = time.monotonic()
        self.transport.write(b"250-hostile.test\r\n")
        if self.f.mode == "endless":
            self.transport.registerProducer(self, False)
        else:
            self.loop = task.LoopingCall(self._trickle)
            self.loop.clock = reactor
            self.loop.start(self.f.interval, now=False)

    def resumeProducing(self):
        if not self.open or self.f.written >= self.f.limit:
            return
        chunk = LINE * 900                  # about 64 KB a write
        self.f.written += len(chunk)
        self.transport.write(chunk)

    def stopProducing(self):
        self.open = False

    def _trickle(self):
        if self.open and self.f.written < self.f.limit:
            i = self.f.written % len(LINE)
            self.f.written += 1
            self.transport.write(LINE[i:i + 1])

    def connectionLost(self, reason):
        self.open = False
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.started is not None:
            self.f.closed_after.append(time.monotonic() - self.started)
