"""The POP3 server protocol (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 SASL).

States AUTHORIZATION → TRANSACTION → UPDATE. DELE only marks a message: marked
messages vanish from STAT/LIST/UIDL/RETR at once but are removed only in the UPDATE
state after QUIT; a dropped connection removes nothing. Commands are answered strictly
in order, also when a client pipelines them behind a login that is still being
checked. One session per mailbox, across processes, through a lease in the database.

Input is split into lines by offset (:class:`~mailet_mta.flow.lines.LineBuffer`). While
the transport's outgoing buffer is full (:mod:`mailet_mta.flow.backpressure`) no
command is handled, reading stops as soon as input is held, and RETR/TOP streaming
waits for the buffer to drain; at most ``COMMANDS_PER_TURN`` pipelined commands are
handled before yielding to the reactor.
"""

from __future__ import annotations

import binascii

from twisted.internet import defer, task
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from ..flow.backpressure import COMMANDS_PER_TURN, FlowControl
from ..flow.lines import TOO_LONG, LineBuffer
from ..mailstore import MessageList
from .commands import TransactionCommands
from .streaming import CHUNK, MessageStreamer

__all__ = ["POP3Server"]

log = Logger(namespace="mailet_mta.pop3")

AUTHORIZATION, TRANSACTION, UPDATE = "AUTHORIZATION", "TRANSACTION", "UPDATE"
MAX_LINE = 8192                 # AUTH PLAIN responses may exceed RFC 2449's 255 octets
MAX_AUTH_FAILURES = 3

_ANY = (AUTHORIZATION, TRANSACTION)
COMMAND_STATES = {
    "CAPA": _ANY, "NOOP": (TRANSACTION,), "QUIT": _ANY, "USER": (AUTHORIZATION,),
    "PASS": (AUTHORIZATION,), "AUTH": (AUTHORIZATION,), "STLS": (AUTHORIZATION,),
    "STAT": (TRANSACTION,), "LIST": (TRANSACTION,), "RETR": (TRANSACTION,),
    "DELE": (TRANSACTION,), "RSET": (TRANSACTION,), "LAST": (TRANSACTION,),
    "TOP": (TRANSACTION,), "UIDL": (TRANSACTION,), "APOP": (AUTHORIZATION,),
}


class POP3Server(TransactionCommands, Protocol, TimeoutMixin):
    """One POP3 session. Built by :class:`~mailet_mta.pop3.factory.POP3ServerFactory`.

    ``backend`` is the :class:`~mailet_mta.mailstore.IMailStore`; the maildrop is the
    user's ``folder``.
    """

    folder = "INBOX"

    def __init__(self, config, backend, tls_context=None, clock=None):
        self.config = config
        self.backend = backend
        self.tls_context = tls_context
        self.clock = clock
        self.state = AUTHORIZATION
        self.tls_active = False
        self.user: str | None = None
        self.client_ip = "unknown"
        self._buffer = LineBuffer()
        self._flow = FlowControl(self._drained)
        self._turn = None            # the call that goes on after COMMANDS_PER_TURN
        self._busy = False
        self._processing = False
        self._closing = False
        self._lost = False
        self._pending_user: str | None = None
        self._continuation = None
        self._auth_failures = 0
        self._owner: str | None = None
        self._refresher: task.LoopingCall | None = None
        self._streamer: MessageStreamer | None = None
        self._reset_mailbox(MessageList())

    # -- connection ------------------------------------------------------------------
    def connectionMade(self) -> None:
        if self.clock is not None:
            self.callLater = self.clock.callLater
        peer = self.transport.getPeer()
        self.client_ip = getattr(peer, "host", "unknown")
        self.tls_active = ISSLTransport.providedBy(self.transport)
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:  # noqa: BLE001 - not a TCP transport (tests, UNIX sockets)
            pass
        self._flow.start(self.transport)
        self.setTimeout(self.config.connection_timeout)
        self.send("+OK mailet-mta POP3 server ready")

    def connectionLost(self, reason=None) -> None:
        self._lost = True
        self.setTimeout(None)
        self._buffer.clear()
        if self._turn is not None and self._turn.active():
            self._turn.cancel()
        if self._refresher is not None and self._refresher.running:
            self._refresher.stop()
        if self._streamer is not None:
            self._streamer.stopProducing()
        if self.state == TRANSACTION and self._owner is not None:
            self._release(self.user, self._owner)
        self.state = UPDATE

    def timeoutConnection(self) -> None:
        if self._closing or self._flow.blocked:
            # A peer that does not read would never take the -ERR, nor let the
            # connection close after it.
            log.info("POP3 session from {ip} aborted: it reads nothing", ip=self.client_ip)
            self._closing = True
            self.transport.abortConnection()
            return
        self.send("-ERR idle timeout, closing the connection")
        self.close()

    def send(self, line: str | bytes) -> None:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.transport.write(line + b"\r\n")

    def close(self) -> None:
        self._closing = True
        self._buffer.clear()
        self._flow.stop()
        self.transport.loseConnection()
        if not self._lost:
            # A peer that does not take the last reply within an idle period is aborted.
            self.setTimeout(self.config.connection_timeout or None)

    # -- input: lines, pipelined, strictly in order ------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.resetTimeout()
        self._buffer.feed(data)
        self._process()

    def _ready(self) -> bool:
        """Whether the next command may be handled now."""
        return not (self._busy or self._closing or self._lost or self._flow.blocked
                    or self._turn is not None)

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            handled = 0
            while self._ready():
                if handled >= COMMANDS_PER_TURN:
                    self._turn = self.callLater(0, self._next_turn)
                    break
                line = self._buffer.next_line(MAX_LINE)
                if line is None:
                    break
                handled += 1
                result = self._dispatch(None if line is TOO_LONG else line)
                if isinstance(result, defer.Deferred):
                    self._busy = True
                    result.addErrback(self._internal_error)
                    result.addBoth(self._command_done)
        finally:
            self._processing = False
        if not self._lost:
            self._flow.hold_input(bool(self._buffer) and not self._ready())

    def _next_turn(self) -> None:
        self._turn = None
        self._process()

    def _drained(self) -> None:
        """The transport sent what it held: stream on, then the commands that waited."""
        if self._lost:
            return
        self.resetTimeout()
        if self._read_first_when_drained:
            self._read_first_when_drained = False
            self._read_first()
        if self._streamer is not None:
            self._streamer.resumeProducing()
        self._process()

    def _command_done(self, _result) -> None:
        self._busy = False
        if not self._lost:
            self.resetTimeout()
            self._process()

    def _internal_error(self, failure) -> None:
        log.failure("POP3 command failed for {ip}", failure, ip=self.client_ip)
        if not self._lost:
            self.send("-ERR [SYS/TEMP] internal error; try again later")

    def _dispatch(self, line: bytes | None):
        if line is None:
            return self.send("-ERR line too long")
        if self._continuation is not None:
            handler, self._continuation = self._continuation, None
            return handler(line)
        text = line.decode("utf-8", "replace")
        command, _, arg = text.partition(" ")
        command = command.upper()
        states = COMMAND_STATES.get(command)
        if states is None:
            return self.send("-ERR unknown command")
        if self.state not in states:
            return self.send(f"-ERR {command} is not valid in the {self.state} state")
        return getattr(self, "do_" + command)(arg.strip() if command != "PASS" else arg)

    # -- any state -----------------------------------------------------------------------
    def capabilities(self) -> list[str]:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state == AUTHORIZATION and self._login_allowed():
            caps += ["USER", "SASL PLAIN"]
        if self.state == AUTHORIZATION and self.tls_context is not None \
                and not self.tls_active:
            caps.append("STLS")
        caps.append("IMPLEMENTATION mailet-mta")
        return caps

    def do_CAPA(self, _arg: str) -> None:
        self.transport.write(("+OK capability list follows\r\n"
                              + "".join(c + "\r\n" for c in self.capabilities())
                              + ".\r\n").encode("ascii"))

    def do_QUIT(self, _arg: str):
        if self.state == AUTHORIZATION:
            self.send("+OK bye")
            return self.close()
        return self._update()

    def do_APOP(self, _arg: str) -> None:
        self.send("-ERR [AUTH] APOP is not supported; use USER/PASS or AUTH PLAIN")

    # -- AUTHORIZATION -------------------------------------------------------------------
    def _login_allowed(self) -> bool:
        return self.tls_active or not self.config.require_ssl

    def _refuse_cleartext(self) -> bool:
        if self._login_allowed():
            return False
        self.send("-ERR [AUTH] TLS is required before logging in: use STLS first")
        return True

    def do_STLS(self, _arg: str) -> None:
        if self.tls_context is None:
            return self.send("-ERR STLS is not available")
        if self.tls_active:
            return self.send("-ERR TLS is already active")
        self.send("+OK begin TLS negotiation")
        # RFC 2595 §4 / CVE-2011-0411: nothing sent before the handshake may be obeyed.
        self._buffer.clear()
        self.transport.startTLS(self.tls_context)
        self.tls_active = True
        self._pending_user = None

    def do_USER(self, arg: str) -> None:
        if self._refuse_cleartext():
            return
        if not arg:
            return self.send("-ERR USER needs a user name")
        self._pending_user = arg
        self.send("+OK send PASS")

    def do_PASS(self, arg: str):
        if self._refuse_cleartext():
            return None
        user, self._pending_user = self._pending_user, None
        if user is None:
            return self.send("-ERR send USER first")
        return self._login(user, arg)

    def do_AUTH(self, arg: str):
        if not arg:
            self.transport.write(b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n")
            return None
        if self._refuse_cleartext():
            return None
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() != "PLAIN":
            return self.send("-ERR unsupported SASL mechanism; use PLAIN")
        if initial:
            return self._auth_plain(initial.strip().encode("ascii", "replace"))
        self.send("+ ")
        self._continuation = self._auth_plain
        return None

    def _auth_plain(self, response: bytes):
        if response.strip() == b"*":
            return self.send("-ERR authentication cancelled")
        try:
            text = response.strip()
            decoded = b"" if text == b"=" else binascii.a2b_base64(text, strict_mode=True)
            authzid, authcid, password = decoded.split(b"\0")
            authzid, authcid = authzid.decode("utf-8"), authcid.decode("utf-8")
            password = password.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return self.send("-ERR [AUTH] malformed AUTH PLAIN response")
        if authzid and authzid.lower() != authcid.lower():
            return self.send("-ERR [AUTH] logging in as another user is not allowed")
        return self._login(authcid, password)

    @defer.inlineCallbacks
    def _login(self, username: str, password: str):
        try:
            result = yield self.backend.check_login(username, password, self.client_ip)
        except Exception:  # noqa: BLE001 - logged; the session answers for it
            log.failure("login check failed")
            self.send("-ERR [SYS/TEMP] cannot check the password now; try again later")
            return
        if self._lost:
            return
        if not result.ok:
            return self._login_failed(username, result)
        owner, locked = self.backend.new_owner(), False
        try:
            locked = yield self.backend.lock(result.user, owner)
            if locked:
                maildrop = yield self.backend.load_listing(result.user, self.folder)
        except Exception:  # noqa: BLE001 - logged; the session answers for it
            log.failure("opening the mailbox of {user} failed", user=result.user)
            if locked:
                self._release(result.user, owner)
            self.send("-ERR [SYS/TEMP] cannot open the mailbox now; try again later")
            return
        if not locked:
            return self.send("-ERR [IN-USE] the mailbox is in use by another session")
        if self._lost:
            self._release(result.user, owner)
            return
        self.user, self._owner, self.state = result.user, owner, TRANSACTION
        self._reset_mailbox(maildrop)
        self._start_refresher()
        log.info("POP3 login of {user} from {ip}", user=self.user, ip=self.client_ip)
        self.send(f"+OK {self.user} has {self._count} messages ({self._octets} octets)")

    def _login_failed(self, username: str, result) -> None:
        log.info("POP3 login failed for {user!r} from {ip}", user=username,
                 ip=self.client_ip)
        if not result.verified:     # refused unchecked: temporary (RFC 3206 SYS/TEMP)
            self.send("-ERR [SYS/TEMP] too many failed logins from your address; "
                      "try again later")
            return self.close()
        self._auth_failures += 1      # checked and wrong: [AUTH], even if now throttled
        if result.throttled or self._auth_failures >= MAX_AUTH_FAILURES:
            self.send("-ERR [AUTH] invalid user name or password; closing the connection")
            return self.close()
        self.send("-ERR [AUTH] invalid user name or password")

    # -- the lease -------------------------------------------------------------------
    def _release(self, user: str, owner: str) -> None:
        """Give the mailbox lease back (if that fails, it expires on its own)."""
        defer.maybeDeferred(self.backend.unlock, user, owner).addErrback(
            lambda f: log.failure("releasing the mailbox lease of {user} failed", f,
                                  user=user))

    def _start_refresher(self) -> None:
        self._refresher = task.LoopingCall(self._refresh)
        if self.clock is not None:
            self._refresher.clock = self.clock
        self._refresher.start(self.backend.lease_seconds / 3, now=False).addErrback(
            lambda f: log.failure("lease refresher stopped", f))

    @defer.inlineCallbacks
    def _refresh(self):
        try:
            still_ours = yield self.backend.refresh(self.user, self._owner)
        except Exception:  # noqa: BLE001 - logged; the session answers for it
            log.failure("refreshing the mailbox lease of {user} failed", user=self.user)
            return
        if not still_ours and not self._lost:
            log.warn("mailbox lease of {user} lost; ending the session", user=self.user)
            self._owner = None
            self._closing = True
            self.transport.abortConnection()

    # -- UPDATE --------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _update(self):
        self.state = UPDATE
        if self._refresher is not None and self._refresher.running:
            self._refresher.stop()
        doomed = [self._drop.ids[i] for i in sorted(self._deleted)]
        owner, self._owner = self._owner, None
        try:
            removed = yield self.backend.finish(self.user, owner, doomed)
        except Exception:  # noqa: BLE001 - logged; the session answers for it
            log.failure("deleting messages of {user} failed", user=self.user)
            self.send("-ERR [SYS/TEMP] some deleted messages were not removed")
            self._release(self.user, owner)
            return self.close()
        self.send(f"+OK bye ({removed} messages deleted)")
        self.close()

    # -- RETR/TOP -------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _send_message(self, number: int, top_lines: int | None = None):
        content = yield self._content(number)
        if self._lost:
            return
        if content is None:
            self.send("-ERR [SYS/PERM] the message no longer exists")
            return
        status = b"+OK top of message follows\r\n" if top_lines is not None \
            else b"+OK %d octets\r\n" % self._drop.sizes[number - 1]
        self._streamer = MessageStreamer(self.transport, self._flow, status,
                                         content.chunks(CHUNK), top_lines)
        try:
            yield self._streamer.start()
        finally:
            self._streamer = None
