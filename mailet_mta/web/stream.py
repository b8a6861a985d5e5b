"""Stream a message to an HTTP client without holding it whole and without disk reads
on the reactor: each chunk is read on a thread, written, and reading pauses while the
client's connection is backed up (a push producer)."""

from __future__ import annotations

from twisted.internet import threads
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

log = Logger(namespace="mailet_mta.webadmin")

CHUNK = 64 * 1024


@implementer(IPushProducer)
class MessageStream:
    """Writes a MessageSource to a request in chunks of ``CHUNK`` octets."""

    def __init__(self, source, chunk: int = CHUNK):
        self.source = source
        self.chunk = chunk
        self.request = None
        self._file = None
        self._paused = self._reading = self._stopped = False

    def start(self, request) -> None:
        self.request = request
        request.setHeader("Content-Length", str(self.source.size))
        if request.method == b"HEAD":
            request.finish()
            return
        if self.source.in_memory:
            request.write(self.source.read())
            request.finish()
            return
        request.registerProducer(self, True)
        self._reading = True
        threads.deferToThread(self.source.open).addCallbacks(self._opened, self._failed)

    def _opened(self, f) -> None:
        self._file = f
        self._reading = False
        self._next()

    def _next(self) -> None:
        if self._paused or self._reading or self._stopped or self._file is None:
            return
        self._reading = True
        threads.deferToThread(self._file.read, self.chunk).addCallbacks(self._got,
                                                                         self._failed)

    def _got(self, data: bytes) -> None:
        self._reading = False
        if self._stopped:
            self._close()
            return
        if not data:
            self._finish()
            return
        self.request.write(data)
        self._next()

    def _failed(self, failure) -> None:
        log.failure("webadmin: reading a message failed", failure)
        self._stopped = True
        self._close()
        self.request.unregisterProducer()
        self.request.channel.loseConnection()

    def _finish(self) -> None:
        self._stopped = True
        self._close()
        self.request.unregisterProducer()
        self.request.finish()

    def _close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            threads.deferToThread(f.close)

    # IPushProducer
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._next()

    def stopProducing(self) -> None:
        self._stopped = True
        if not self._reading:
            self._close()
