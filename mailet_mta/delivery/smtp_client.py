"""The SMTP client protocol: commands out, replies in, body streamed with dot-stuffing.

This layer knows the wire only. :meth:`SMTPClientProtocol.send` writes one or more
commands in a single write (PIPELINING, RFC 2920) and returns one Deferred per command,
fired with its :class:`Reply` in order. Every wait for a reply is bounded by
``timeout``; a silent server is disconnected and the waiting Deferreds fail with
:class:`SMTPConnectionLost`.

A next hop is a stranger: one reply may hold at most :data:`MAX_REPLY_LINES` lines and
:data:`MAX_REPLY_BYTES` octets, and each reply must be complete within ``timeout`` of
the moment it became due, however slowly its bytes trickle in. A peer that breaks a
bound is disconnected; the waiting commands fail with :class:`SMTPConnectionLost`,
which the session turns into a temporary failure of the host.
"""

from __future__ import annotations

import re
from collections import deque

from twisted.internet import defer, interfaces
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from .dotstuff import DotStuffer

CHUNK = 64 * 1024
MAX_REPLY_LINE = 8192          # octets in one reply line
MAX_REPLY_LINES = 100          # lines in one (multi-line) reply
MAX_REPLY_BYTES = 64 * 1024    # octets in one reply, all its lines together
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


class _ProtocolViolation(Exception):
    """The peer broke a bound or a rule of the protocol; the connection is aborted."""


class SMTPClientProtocol(Protocol):
    """Line-oriented SMTP client; the caller drives it with :meth:`send`."""

    def __init__(self, clock, timeout: float):
        self.clock = clock
        self.timeout = timeout
        self._buffer = b""
        self._lines: list[str] = []
        self._reply_bytes = 0
        self._waiters: deque[defer.Deferred] = deque()
        self._timer = None
        self._lost = None
        self._tls_switch = None       # client TLS options while STARTTLS awaits its 220
        self.violation: str | None = None
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
        if self.violation is not None:
            text = self.violation
        elif self.timed_out:
            text = f"no complete reply within {self.timeout:g} seconds"
        else:
            text = f"connection lost: {reason.getErrorMessage()}"
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
        if self.violation is not None:
            return
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        try:
            for index, line in enumerate(lines):
                if len(line) > MAX_REPLY_LINE:
                    raise _ProtocolViolation(f"a reply line longer than {MAX_REPLY_LINE} "
                                             f"octets")
                switch = self._line(line.rstrip(b"\r"))
                if switch is not None:
                    self._switch_to_tls(switch, index + 1 < len(lines) or self._buffer)
                    return
            if len(self._buffer) > MAX_REPLY_LINE:
                raise _ProtocolViolation(f"a reply line longer than {MAX_REPLY_LINE} octets")
        except _ProtocolViolation as exc:
            self._violate(str(exc))

    def _switch_to_tls(self, switch, injected) -> None:
        """The 220 to STARTTLS arrived: start TLS at once, with nothing read in plaintext
        kept; any byte after the 220 is an injection attempt (RFC 3207 section 6)."""
        d, reply, options = switch
        if injected:
            self._waiters.appendleft(d)      # fails with the violation below
            self._violate("the server sent more after its 220 reply to STARTTLS (a "
                          "response injection attempt, RFC 3207 section 6)")
            return
        self._buffer, self._lines, self._reply_bytes = b"", [], 0
        self.transport.startTLS(options)
        d.callback(reply)

    def _violate(self, text: str) -> None:
        """Drop the peer for breaking a rule; the waiting commands fail with ``text``."""
        self.violation = text
        self._buffer, self._lines = b"", []
        self.abort()

    def _line(self, raw: bytes):
        """Take one reply line; returns (Deferred, Reply, TLS options) when the line
        completed the 220 that switches the connection to TLS, else None."""
        code_text, sep = raw[:3], raw[3:4]
        if not code_text.isdigit() or len(code_text) != 3 or sep not in (b" ", b"-", b""):
            raise _ProtocolViolation("the server sent a line that is not an SMTP reply")
        self._lines.append(raw[4:].decode("utf-8", "replace"))
        self._reply_bytes += len(raw) + 2
        if len(self._lines) > MAX_REPLY_LINES or self._reply_bytes > MAX_REPLY_BYTES:
            raise _ProtocolViolation(f"a reply longer than {MAX_REPLY_LINES} lines or "
                                     f"{MAX_REPLY_BYTES} octets")
        if sep == b"-":
            return None
        reply = Reply(int(code_text), self._lines)
        self._lines, self._reply_bytes = [], 0
        if not self._waiters:
            return None           # unsolicited (e.g. 421 before closing): ignored
        d = self._waiters.popleft()
        if self._waiters:
            self._arm()
        else:
            self._disarm()
        options, self._tls_switch = self._tls_switch, None
        if options is not None and reply.code == 220:
            return d, reply, options
        d.callback(reply)
        return None

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
        """Write ``commands`` in one write; one Deferred[Reply] per command.

        A command holding CR or LF would smuggle a second command: it is refused.
        """
        data = b"".join((c if isinstance(c, bytes) else c.encode("utf-8")) + b"\r\n"
                        for c in commands)
        if data.count(b"\r") != len(commands) or data.count(b"\n") != len(commands):
            raise ValueError(f"an SMTP command holds CR or LF: {commands!r}")
        waiters = [self._expect() for _ in commands]
        if self._lost is None:
            self.transport.write(data)
        return waiters

    def command(self, command: str | bytes) -> defer.Deferred:
        return self.send(command)[0]

    def start_tls(self, options) -> defer.Deferred:
        """Send STARTTLS; on its 220 the connection switches to TLS with ``options``
        before another byte is read. Deferred[Reply] (any reply: the caller checks)."""
        self._tls_switch = options
        return self.command("STARTTLS")

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
