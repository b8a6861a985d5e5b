"""The ESMTP session protocol: input framing, pipelining, timeouts, shutdown.

:class:`SMTPServerProtocol` is a plain :class:`~twisted.internet.protocol.Protocol`
(not a subclass of ``twisted.mail.smtp.ESMTP``), so it owns its input buffer:

- Commands are split at LF (a trailing CR is dropped) by offset
  (:class:`~mailet_mta.flow.lines.LineBuffer`). A command line over ``MAX_LINE``
  octets gets ``500 5.5.2 Line too long``; its bytes are dropped as they arrive, up to
  the next LF, so memory never grows with junk.
- While a command waits on a Deferred (AUTH, end of DATA) no later command is looked
  at (RFC 2920 §3.1: replies stay in order) and reading stops once input is held.
  Replies are collected and written with one ``write`` per batch, handed to the
  socket in the same call unless the transport's buffer is over its bound.
- Back-pressure (:mod:`mailet_mta.flow.backpressure`): while the transport's outgoing
  buffer is full, no command is handled and reading stops, so a client that pipelines
  and never reads costs a bounded amount of memory and runs into the idle timeout. At
  most ``COMMANDS_PER_TURN`` commands are handled before yielding to the reactor.
- Message bodies go through the bulk readers of :mod:`.data_reader` straight into the
  backend's blob writer; a long line in DATA never drops back into command mode.
- STARTTLS discards whatever the client pipelined after it (CVE-2011-0411 class) and
  forgets HELO/EHLO, AUTH and the transaction (RFC 3207 §4.2).

The verbs live in :mod:`.commands`, the body/commit path in :mod:`.transfer`.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from .. import metrics
from ..flow.backpressure import COMMANDS_PER_TURN, FlowControl
from ..flow.lines import TOO_LONG, LineBuffer
from .commands import CommandsMixin
from .envelope import Session
from .replies import format_reply
from .transfer import TransferMixin

log = Logger()


class SMTPServerProtocol(CommandsMixin, TransferMixin, Protocol, TimeoutMixin):
    """One ESMTP session; built by :class:`mailet_mta.smtp.server.SMTPServerFactory`."""

    MAX_LINE = 2048        # RFC 5321 §4.5.3.1.4 says 512; parameters make lines longer
    MAX_AUTH_LINE = 12288  # RFC 4954 §4

    def __init__(self, factory):
        self.factory = factory
        self.config = factory.config
        self.backend = factory.backend
        self.policy = factory.policy
        self.server_name = factory.server_name
        self.tls_context = factory.tls_context
        self.session: Session | None = None
        self.envelope = None
        self._buf = LineBuffer()
        self._flow = FlowControl(self._drained)
        self._turn = None            # the call that goes on after COMMANDS_PER_TURN
        self._out: list[bytes] = []
        self._reader = None          # a body reader while DATA/BDAT bytes arrive
        self._writer = None          # the blob writer of the transaction's body
        self._auth = None            # the SASL mechanism awaiting a client response
        self._busy = False
        self._closing = False
        self._lost = False
        self._shutdown_requested = False
        self.closed = defer.Deferred()

    # -- connection ----------------------------------------------------------------
    def connectionMade(self):
        peer, host = self.transport.getPeer(), self.transport.getHost()
        remote_ip = getattr(peer, "host", "127.0.0.1")
        self.session = Session(remote_ip=remote_ip, local_ip=getattr(host, "host", ""),
                               authorized_network=self.policy.is_authorized_network(remote_ip),
                               tls=self.factory.implicit_tls
                               or self.config.listen.startswith("ssl:"))
        _set_nodelay(self.transport)
        self._flow.start(self.transport)
        self.setTimeout(self.config.connection_timeout or None)
        greeting = self.config.greeting or "ESMTP mailet-mta"
        self.reply(220, None, f"{self.server_name} {greeting}")
        self.flush()

    def connectionLost(self, reason=None):
        self._lost = True
        self._closing = True
        self.setTimeout(None)
        if self._turn is not None and self._turn.active():
            self._turn.cancel()
        self._abort_body()
        self.factory.session_ended(self)
        if not self.closed.called:
            self.closed.callback(None)

    def timeoutConnection(self):
        if self._busy:
            self.resetTimeout()
            return
        if self._closing or self._flow.blocked:
            # A peer that does not read cannot be told: it would never take the 421,
            # nor let the connection close after it.
            log.info("SMTP session from {ip} aborted: it reads nothing",
                     ip=self.session.remote_ip)
            self._abort_body()
            self._closing = True
            self.transport.abortConnection()
            return
        log.info("SMTP session from {ip} timed out", ip=self.session.remote_ip)
        self._abort_body()
        self.close_with(421, "4.4.2", f"{self.server_name} Error: timeout exceeded")

    def shutdown(self) -> None:
        """Close at the next command boundary with 421 4.3.2 (service stopping)."""
        self._shutdown_requested = True
        if self._idle():
            self._say_shutdown()

    def _idle(self) -> bool:
        return not (self._busy or self._reader is not None or self._closing)

    def _say_shutdown(self) -> None:
        self.close_with(421, "4.3.2", f"{self.server_name} Service shutting down")

    # -- output --------------------------------------------------------------------
    def reply(self, code: int, enhanced: str | None, text) -> None:
        metrics.smtp_reply(code, enhanced)
        self._out.append(format_reply(code, enhanced, text))

    def flush(self) -> None:
        """Send the replies collected since the last flush, in one write handed to the
        socket at once (:meth:`FlowControl.send_now`: one ``send`` on a plain TCP
        socket that holds nothing, without registering it with the reactor): once per
        received chunk or per completed Deferred, so a pipelined group still gets its
        replies together."""
        if self._out and not self._lost:
            self._flow.send_now(self.transport, b"".join(self._out))
        self._out = []

    def close_with(self, code: int, enhanced: str | None, text: str) -> None:
        self.reply(code, enhanced, text)
        self.flush()
        self._closing = True
        self._buf.clear()
        self._flow.stop()
        self.transport.loseConnection()
        if not self._lost:
            # A peer that does not take the last reply within an idle period is aborted.
            self.setTimeout(self.config.connection_timeout or None)

    # -- input ---------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.resetTimeout()
        self._buf.feed(data)
        self._process()

    def _ready(self) -> bool:
        """Whether the next command (or body chunk) may be handled now."""
        return not (self._busy or self._closing or self._flow.blocked
                    or self._turn is not None)

    def _process(self) -> None:
        handled = 0
        while self._ready():
            if handled >= COMMANDS_PER_TURN:
                self._turn = self.callLater(0, self._next_turn)
                break
            handled += 1
            if self._reader is not None:
                if not self._buf:
                    break
                rest = self._reader.feed(self._buf.take())
                if rest is None:
                    break
                self._buf.feed(rest)
                self._wait(self.body_received())
                continue
            if self._shutdown_requested and self._auth is None:
                self._say_shutdown()
                break
            line = self._next_line()
            if line is None:
                break
            self._wait(self._dispatch(line))
        self.flush()
        if not self._lost:
            self._flow.hold_input(bool(self._buf) and not self._ready())

    def _next_turn(self) -> None:
        self._turn = None
        if not self._lost:
            self._process()

    def _drained(self) -> None:
        """The transport sent what it held: go on with the commands that waited."""
        if not self._lost:
            self.resetTimeout()
            self._process()

    def _next_line(self) -> bytes | None:
        limit = self.MAX_AUTH_LINE if self._auth is not None else self.MAX_LINE
        while True:
            line = self._buf.next_line(limit)
            if line is not TOO_LONG:
                return line
            self._line_too_long()

    def _line_too_long(self) -> None:
        self._auth = None
        self.reply(500, "5.5.2", "Line too long")

    def _dispatch(self, raw: bytes):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._auth = None
            self.reply(500, "5.5.2", "Command is not valid UTF-8")
            return None
        if self._auth is not None:
            return self.auth_response(line)
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        handler = getattr(self, "do_" + verb, None) if verb.isascii() and verb.isalpha() else None
        if handler is None:
            self.reply(500, "5.5.2", "Error: command not recognized")
            return None
        try:
            return handler(arg.strip(" \t"))
        except Exception:  # noqa: BLE001 - a bug must cost one reply, not the session
            log.failure("SMTP {verb} failed", verb=verb)
            self.reset_transaction()
            self.reply(451, "4.3.0", "Internal error, try again later")
            return None

    def _wait(self, result) -> None:
        """Hold further input until the Deferred ``result`` of a command has fired."""
        if not isinstance(result, defer.Deferred):
            return
        self._busy = True
        pending = [True]

        def done(_):
            self._busy = False
            if pending[0] or self._lost:
                return
            self.resetTimeout()
            self._process()
            if self._shutdown_requested and self._idle():
                self._say_shutdown()

        result.addErrback(self._internal_error)
        result.addCallback(done)
        pending[0] = False
        if self._busy:
            self.flush()

    def _internal_error(self, failure) -> None:
        log.failure("SMTP command failed", failure)
        self.reply(451, "4.3.0", "Internal error, try again later")


def _set_nodelay(transport) -> None:
    """TCP_NODELAY on the socket, also under a TLS wrapper."""
    for candidate in (transport, getattr(transport, "transport", None)):
        setter = getattr(candidate, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except Exception:  # noqa: BLE001 - not a TCP socket (tests, UNIX sockets)
                pass
            return
