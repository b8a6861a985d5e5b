"""The SMTP client protocol: commands out, replies in, body streamed with dot-stuffing.

This layer knows the wire only. :meth:`SMTPClientProtocol.send` writes one or more
commands in a single write (PIPELINING, RFC 2920) and returns one Deferred per command,
fired with its :class:`Reply` in order. Every wait for a reply is bounded by
``timeout``; a silent server is disconnected and the waiting Deferreds fail with
:class:`SMTPConnectionLost`.
"""

from __future__ import annotations

import re
from collections import deque

from twisted.internet import defer, interfaces
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from .dotstuff import DotStuffer

CHUNK = 64 * 1024
MAX_REPLY_LINE = 8192
_ENHANCED_RE = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")


class Reply:
    """One (possibly multi-line) SMTP reply."""

    __slots__ = ("code", "lines")

    def __init__(self, code: int, lines: list[str]):
        self.code = code
        self.lines = lines

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 status code at the start of the text (``5.1.1``), if any."""
        m = _ENHANCED_RE.match(self.lines[0] if self.lines else "")
        return m.group(1) if m else None

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    def __repr__(self) -> str:
        return f"<Reply {self}>"


class SMTPConnectionLost(Exception):
    """The connection ended (or timed out) while a reply was awaited."""

    def __init__(self, message: str, reason=None, timed_out: bool = False):
        super().__init__(message)
        self.reason = reason
        self.timed_out = timed_out


class SMTPClientProtocol(Protocol):
    """Line-oriented SMTP client; the caller drives it with :meth:`send`."""

    def __init__(self, clock, timeout: float):
        self.clock = clock
        self.timeout = timeout
        self._buffer = b""
        self._lines: list[str] = []
        self._waiters: deque[defer.Deferred] = deque()
        self._timer = None
        self._lost = None
        self.timed_out = False
        self.greeting = self._expect()

    # -- connection -----------------------------------------------------------------
    def connectionMade(self):
        # Commands and the end of DATA are small writes that wait for a reply: without
        # TCP_NODELAY, Nagle holds them until the peer's delayed ACK (~40 ms each).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self._arm()

    def connectionLost(self, reason):
        self._disarm()
        text = "timed out waiting for the server" if self.timed_out else (
            f"connection lost: {reason.getErrorMessage()}")
        self._lost = SMTPConnectionLost(text, reason, self.timed_out)
        waiters, self._waiters = self._waiters, deque()
        for d in waiters:
            d.errback(self._lost)

    @property
    def is_open(self) -> bool:
        return self._lost is None and self.transport is not None

    def abort(self) -> None:
        if self.transport is not None and self._lost is None:
            self.transport.abortConnection()

    # -- replies ----------------------------------------------------------------------
    def dataReceived(self, data: bytes):
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._line(line.rstrip(b"\r").decode("utf-8", "replace"))
        if len(self._buffer) > MAX_REPLY_LINE:
            self._buffer = b""
            self.abort()

    def _line(self, line: str) -> None:
        code_text, sep, text = line[:3], line[3:4], line[4:]
        if not code_text.isdigit():
            self.abort()          # not SMTP: give up on this peer
            return
        self._lines.append(text)
        if sep == "-":
            return
        reply = Reply(int(code_text), self._lines)
        self._lines = []
        if not self._waiters:
            return                # unsolicited (e.g. 421 before closing): ignored
        d = self._waiters.popleft()
        if self._waiters:
            self._arm()
        else:
            self._disarm()
        d.callback(reply)

    def _expect(self) -> defer.Deferred:
        d = defer.Deferred()
        if self._lost is not None:
            d.errback(self._lost)
            return d
        self._waiters.append(d)
        if self.transport is not None and len(self._waiters) == 1:
            self._arm()
        return d

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.clock.callLater(self.timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self.timed_out = True
        self.abort()

    # -- commands ---------------------------------------------------------------------
    def send(self, *commands: str | bytes) -> list[defer.Deferred]:
        """Write ``commands`` in one write; one Deferred[Reply] per command."""
        data = b"".join((c if isinstance(c, bytes) else c.encode("utf-8")) + b"\r\n"
                        for c in commands)
        waiters = [self._expect() for _ in commands]
        if self._lost is None:
            self.transport.write(data)
        return waiters

    def command(self, command: str | bytes) -> defer.Deferred:
        return self.send(command)[0]

    def send_body(self, source) -> defer.Deferred:
        """Stream the message after a 354; Deferred[Reply] for the final reply."""
        producer = _BodyProducer(self, source)
        return producer.start()


@implementer(interfaces.IPullProducer)
class _BodyProducer:
    """Reads the message in chunks and writes them dot-stuffed when the transport asks."""

    def __init__(self, protocol: SMTPClientProtocol, source):
        self.protocol = protocol
        self.source = source
        self.file = None
        self.stuffer = DotStuffer()
        self.done = defer.Deferred()

    def start(self) -> defer.Deferred:
        try:
            self.file = self.source.open()
        except OSError as exc:
            self.protocol.abort()
            return defer.fail(exc)
        self.protocol.transport.registerProducer(self, False)
        return self.done

    def resumeProducing(self):
        if not self.protocol.is_open:
            self.stopProducing()
            return
        self.protocol._arm()      # a peer that stops reading times out like a silent one
        chunk = self.file.read(CHUNK)
        if len(chunk) == CHUNK:
            self.protocol.transport.write(self.stuffer.feed(chunk))
            return
        self._close()
        self.protocol.transport.unregisterProducer()
        self.protocol.transport.write(self.stuffer.feed(chunk) + self.stuffer.finish())
        self.protocol._expect().chainDeferred(self.done)

    def stopProducing(self):
        self._close()
        if not self.done.called:
            self.protocol.abort()
            self.done.errback(SMTPConnectionLost("connection lost while sending the message"))

    def _close(self):
        if self.file is not None:
            self.file.close()
            self.file = None
