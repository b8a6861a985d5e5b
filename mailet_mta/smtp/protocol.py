"""The ESMTP session protocol: input framing, pipelining, timeouts, shutdown.

:class:`SMTPServerProtocol` is a plain :class:`~twisted.internet.protocol.Protocol`
(not a subclass of ``twisted.mail.smtp.ESMTP``), so it owns its input buffer:

- Commands are split at LF (a trailing CR is dropped). A command line over
  ``MAX_LINE`` octets gets ``500 5.5.2 Line too long``; its bytes are dropped as they
  arrive, up to the next LF, so memory never grows with junk.
- While a command waits on a Deferred (AUTH, end of DATA) the transport is paused and
  no later command is looked at (RFC 2920 §3.1: replies stay in order). Replies are
  collected and written with one ``write`` per batch.
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
        self._buf = b""
        self._out: list[bytes] = []
        self._reader = None          # a body reader while DATA/BDAT bytes arrive
        self._writer = None          # the blob writer of the transaction's body
        self._auth = None            # the SASL mechanism awaiting a client response
        self._busy = False
        self._paused = False
        self._discarding = False
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
        self.setTimeout(self.config.connection_timeout or None)
        greeting = self.config.greeting or "ESMTP mailet-mta"
        self.reply(220, None, f"{self.server_name} {greeting}")
        self.flush()

    def connectionLost(self, reason=None):
        self._lost = True
        self._closing = True
        self.setTimeout(None)
        self._abort_body()
        self.factory.session_ended(self)
        if not self.closed.called:
            self.closed.callback(None)

    def timeoutConnection(self):
        if self._busy:
            self.resetTimeout()
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
        if self._out and not self._lost:
            self.transport.write(b"".join(self._out))
        self._out = []

    def close_with(self, code: int, enhanced: str | None, text: str) -> None:
        self.reply(code, enhanced, text)
        self.flush()
        self._closing = True
        self._buf = b""
        self.transport.loseConnection()

    # -- input ---------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.resetTimeout()
        self._buf = self._buf + data if self._buf else data
        if self._busy:
            self._pause()
        self._process()

    def _process(self) -> None:
        while not self._busy and not self._closing:
            if self._reader is not None:
                if not self._buf:
                    break
                rest = self._reader.feed(self._buf)
                if rest is None:
                    self._buf = b""
                    break
                self._buf = rest
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

    def _next_line(self) -> bytes | None:
        limit = self.MAX_AUTH_LINE if self._auth is not None else self.MAX_LINE
        while True:
            idx = self._buf.find(b"\n")
            if self._discarding:
                if idx < 0:
                    self._buf = b""
                    return None
                self._buf = self._buf[idx + 1:]
                self._discarding = False
                continue
            if idx < 0:
                if len(self._buf) > limit:
                    self._buf = b""
                    self._discarding = True
                    self._line_too_long()
                return None
            line, self._buf = self._buf[:idx], self._buf[idx + 1:]
            if idx > limit:
                self._line_too_long()
                continue
            return line[:-1] if line.endswith(b"\r") else line

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
            if self._paused:
                self._paused = False
                self.transport.resumeProducing()
            self.resetTimeout()
            self._process()
            if self._shutdown_requested and self._idle():
                self._say_shutdown()

        result.addErrback(self._internal_error)
        result.addCallback(done)
        pending[0] = False
        if self._busy:
            self.flush()
            if self._buf:
                self._pause()

    def _pause(self) -> None:
        """Stop reading while input waits behind a command that has not finished.

        Only when input is actually held: a client waiting for its reply costs no
        pause/resume (two epoll_ctl calls) per command.
        """
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()

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
