"""The IMAP4rev1 server protocol (RFC 3501) with the extensions modern clients use.

Why this package owns its protocol class instead of subclassing
``twisted.mail.imap4.IMAP4Server``: reading that code (Twisted 24), its server knows
IMAP4rev1, IDLE, NAMESPACE and literals, but has no UIDPLUS (``UID EXPUNGE``,
``APPENDUID``/``COPYUID``), MOVE, CONDSTORE/QRESYNC, SPECIAL-USE, ENABLE, LITERAL+ or
UTF8=ACCEPT; its parser buffers every literal whole in memory with no bound other than
a global ``_literalStringLimit``, its mailbox interface is synchronous-first
(``IMailbox.fetch`` returns an iterator of message objects the server walks on the
reactor, so rendering BODYSTRUCTURE of a large folder would stall every session), and
its command dispatch keys on private attributes. Adding the missing extensions would
mean overriding most of its methods; owning the class keeps the session small, lets
each command run against the :class:`~mailet_mta.mailstore.IMailStore` Deferreds, and
keeps the reactor free (rendering in worker threads, back-pressure on every write).

States (RFC 3501 §3): not authenticated → authenticated → selected → logout.
Commands are handled strictly in order, also when pipelined; while one waits on the
store, the next waits in the reader. Untagged ``EXPUNGE`` (``VANISHED`` after ``ENABLE
QRESYNC``) is never sent while a ``FETCH``, ``STORE`` or ``SEARCH`` by sequence number
runs (RFC 3501 §7.4.1, RFC 7162 §3.2.10); changes by
other sessions are told after the other commands, at ``NOOP``/``CHECK`` and at once
during ``IDLE``.

Input goes through :class:`~mailet_mta.imap.parser.CommandReader` (bounded lines,
literals, tokens); a line over the bound is answered ``BAD`` and dropped as it arrives,
and past :data:`MAX_DISCARDED` octets of it the session says ``BYE`` and closes.
Output waits for the transport like the POP3 server: while the transport's outgoing
buffer is full (:mod:`mailet_mta.flow.backpressure`) no command is handled and a long
FETCH writes its next batch only when the buffer has drained.
"""

from __future__ import annotations

import binascii

from twisted.internet import defer, task
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from ..flow.backpressure import COMMANDS_PER_TURN, FlowControl
from ..flow.lines import TOO_LONG
from ..mail import MimeLimits
from .encoding import astring_to_str
from .errors import BadCommand, CommandRefused
from .mailbox_commands import MailboxCommands
from .mime import DEFAULT_LIMITS
from .parser import CONTINUE, Command, CommandReader, Rejected
from .selected_commands import SelectedCommands

__all__ = ["IMAPServer", "NOT_AUTHENTICATED", "AUTHENTICATED", "SELECTED", "LOGOUT"]

log = Logger(namespace="mailet_mta.imap")

NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = (
    "not authenticated", "authenticated", "selected", "logout")
MAX_AUTH_FAILURES = 3
SASL_LINE = 8192
# Octets of one overlong line dropped before the session is closed: a line this long
# is no command, and a peer that streams one keeps the idle timer from ever firing.
MAX_DISCARDED = 1 << 20

_ANY = (NOT_AUTHENTICATED, AUTHENTICATED, SELECTED)
_AUTH = (AUTHENTICATED, SELECTED)
_SEL = (SELECTED,)
# name → (states, whether changes of other sessions may be told before its tagged OK:
# "all", "no-expunge" or None)
COMMANDS = {
    "CAPABILITY": (_ANY, None), "NOOP": (_ANY, "all"), "LOGOUT": (_ANY, None),
    "ID": (_ANY, None), "STARTTLS": ((NOT_AUTHENTICATED,), None),
    "LOGIN": ((NOT_AUTHENTICATED,), None), "AUTHENTICATE": ((NOT_AUTHENTICATED,), None),
    "ENABLE": (_AUTH, None), "SELECT": (_AUTH, None), "EXAMINE": (_AUTH, None),
    "CREATE": (_AUTH, "all"), "DELETE": (_AUTH, "all"), "RENAME": (_AUTH, "all"),
    "SUBSCRIBE": (_AUTH, "all"), "UNSUBSCRIBE": (_AUTH, "all"), "LIST": (_AUTH, "all"),
    "LSUB": (_AUTH, "all"), "STATUS": (_AUTH, "all"), "APPEND": (_AUTH, "all"),
    "NAMESPACE": (_AUTH, "all"), "IDLE": (_AUTH, None), "CHECK": (_SEL, "all"),
    "CLOSE": (_SEL, None), "UNSELECT": (_SEL, None), "EXPUNGE": (_SEL, "all"),
    "SEARCH": (_SEL, "no-expunge"), "FETCH": (_SEL, "no-expunge"),
    "STORE": (_SEL, "no-expunge"), "COPY": (_SEL, "all"), "MOVE": (_SEL, "all"),
    "UID": (_SEL, "all"), "GETQUOTA": (_AUTH, "all"), "GETQUOTAROOT": (_AUTH, "all"),
}


class IMAPServer(MailboxCommands, SelectedCommands, Protocol, TimeoutMixin):
    """One IMAP session. Built by :class:`~mailet_mta.imap.factory.IMAPServerFactory`.

    ``backend`` is the :class:`~mailet_mta.mailstore.IMailStore`; ``run(fn, *args)``
    runs CPU-heavy rendering off the reactor and returns a Deferred (the factory's
    worker threads; tests may run it in place).
    """

    mime_limits: MimeLimits = DEFAULT_LIMITS     # the factory's (spool manager limits)

    def __init__(self, config, backend, tls_context=None, clock=None, run=None):
        self.config = config
        self.backend = backend
        self.tls_context = tls_context
        self.clock = clock
        self.run = run if run is not None else _run_in_place
        self.state = NOT_AUTHENTICATED
        self.tls_active = False
        self.user: str | None = None
        self.client_ip = "unknown"
        self.enabled: set[str] = set()
        self.reader = CommandReader(max_append=getattr(config, "max_message_size", 0),
                                    append_sink=self.append_sink)
        self._flow = FlowControl(self._drained)
        self._drain_waiters: list[defer.Deferred] = []
        self._turn = None
        self._busy = False
        self._processing = False
        self._closing = False
        self._lost = False
        self._line_handler = None         # AUTHENTICATE's response, IDLE's DONE
        self._auth_failures = 0
        self._discarded = 0               # octets of an overlong line dropped so far
        self.selected = None

    # -- connection ----------------------------------------------------------------------
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
        self.setTimeout(self.config.connection_timeout or None)
        self.untagged(f"OK [CAPABILITY {' '.join(self.capabilities())}] "
                      "mailet-mta IMAP4rev1 server ready")

    def connectionLost(self, reason=None) -> None:
        self._lost = True
        if self._line_handler is not None:
            handler, self._line_handler = self._line_handler, None
            if self.idling:
                handler(TOO_LONG)          # ends IDLE and its heartbeat
        self.setTimeout(None)
        self.reader.clear()
        if self._turn is not None and self._turn.active():
            self._turn.cancel()
        self._close_mailbox()
        for waiter in self._drain_waiters:
            waiter.callback(False)
        self._drain_waiters = []
        self.state = LOGOUT

    def timeoutConnection(self) -> None:
        if self._closing or self._flow.blocked:
            log.info("IMAP session from {ip} aborted: it reads nothing", ip=self.client_ip)
            self._closing = True
            self.transport.abortConnection()
            return
        self.untagged("BYE autologout: idle for too long")
        self.close()

    def close(self) -> None:
        self._closing = True
        self.reader.clear()
        self._flow.stop()
        self.transport.loseConnection()
        if not self._lost:
            self.setTimeout(self.config.connection_timeout or None)

    # -- output --------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._lost:
            self.transport.write(data)

    def untagged(self, text: str | bytes) -> None:
        if isinstance(text, str):
            text = text.encode("utf-8")
        self.write(b"* " + text + b"\r\n")

    def tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        code_text = f"[{code}] " if code else ""
        self.write(f"{tag} {status} {code_text}{text}\r\n".encode("utf-8", "replace"))

    def wait_for_drain(self) -> defer.Deferred:
        """Fires (True) once the transport has room for more, at once if it has;
        False when the connection is gone."""
        if self._lost:
            return defer.succeed(False)
        if not self._flow.blocked:
            return defer.succeed(True)
        d: defer.Deferred = defer.Deferred()
        self._drain_waiters.append(d)
        return d

    def _drained(self) -> None:
        if self._lost:
            return
        self.resetTimeout()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            waiter.callback(True)
        self._process()

    # -- input ---------------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.resetTimeout()
        self.reader.feed(data)
        self._process()
        if not self.reader.discarding:
            self._discarded = 0
            return
        self._discarded += len(data)
        if self._discarded > MAX_DISCARDED and not self._closing:
            log.info("IMAP session from {ip} closed: a line of more than {n} octets",
                     ip=self.client_ip, n=MAX_DISCARDED)
            self.untagged("BYE the line does not end; closing")
            self.close()

    def _ready(self) -> bool:
        if self._closing or self._lost or self._turn is not None:
            return False
        if self._line_handler is not None:     # IDLE's DONE is read while it waits
            return True
        return not (self._busy or self._flow.blocked)

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
                if self._line_handler is not None:
                    line = self.reader.next_line(SASL_LINE)
                    if line is None:
                        break
                    handler, self._line_handler = self._line_handler, None
                    result = handler(line)
                else:
                    event = self.reader.next_event()
                    if event is None:
                        break
                    result = self._event(event)
                handled += 1
                if isinstance(result, defer.Deferred):
                    self._busy = True
                    result.addErrback(self._internal_error)
                    result.addBoth(self._command_done)
        finally:
            self._processing = False
        if not self._lost:
            pending = bool(self.reader) and not self._ready()
            self._flow.hold_input(pending)

    def _next_turn(self) -> None:
        self._turn = None
        self._process()

    def _command_done(self, _result) -> None:
        self._busy = False
        if not self._lost:
            self.resetTimeout()
            self._process()

    def _internal_error(self, failure) -> None:
        log.failure("IMAP command failed for {ip}", failure, ip=self.client_ip)
        if not self._lost:
            self.untagged("BYE [SERVERBUG] internal error; try again later")
            self.close()

    def _event(self, event):
        if event is CONTINUE:
            self.write(b"+ Ready for literal data\r\n")
            return None
        if isinstance(event, Rejected):
            if event.fatal:
                self.tagged(event.tag, "BAD", event.text)
                self.untagged("BYE the input cannot be read any further")
                return self.close()
            return self.tagged(event.tag, "BAD", event.text)
        return self._command(event)

    def _command(self, cmd: Command):
        tag, name, args = cmd.tag, cmd.name, cmd.args
        entry = COMMANDS.get(name)
        if entry is None:
            return self.tagged(tag, "BAD", f"unknown command {name[:40]}")
        states, tells = entry
        if self.state not in states:
            return self.tagged(tag, "BAD", f"{name} is not valid in the {self.state} state")
        if name == "UID":
            if not args or not isinstance(args[0], str):
                return self.tagged(tag, "BAD", "UID needs a command")
            sub = args[0].upper()
            if sub not in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"):
                return self.tagged(tag, "BAD", f"UID {sub[:40]} is not a command")
            handler, args = getattr(self, "uid_" + sub), args[1:]
        else:
            handler = getattr(self, "do_" + name)
        try:
            result = handler(tag, args)
        except (BadCommand, CommandRefused) as exc:
            return self._refused(tag, exc)
        except Exception:  # noqa: BLE001 - logged; the session answers and goes on
            return self._failed(Failure(), tag)
        if isinstance(result, defer.Deferred):
            result.addCallback(self._finish, tag, tells)
            result.addErrback(self._failed, tag)
            return result
        return self._finish(result, tag, tells)

    def _finish(self, text, tag: str, tells):
        """The tagged OK, after the changes of other sessions the command may tell."""
        if text is None or self._lost:
            return None
        code = None
        if isinstance(text, tuple):
            code, text = text
        if tells is not None and self.selected is not None and self.selected.dirty:
            d = self.sync_changes(allow_expunge=tells == "all")
            d.addCallback(lambda _: self.tagged(tag, "OK", text, _code_text(code)))
            return d
        self.tagged(tag, "OK", text, _code_text(code))
        return None

    def _failed(self, failure, tag: str):
        if failure.check(BadCommand, CommandRefused):
            return self._refused(tag, failure.value)
        log.failure("IMAP command of {user} failed", failure, user=self.user)
        if not self._lost:
            self.tagged(tag, "NO", "internal error; try again later", "SERVERBUG")
        return None

    def _refused(self, tag: str, exc) -> None:
        status = "BAD" if isinstance(exc, BadCommand) else "NO"
        self.tagged(tag, status, exc.text, exc.code)

    # -- any state -------------------------------------------------------------------
    def login_allowed(self) -> bool:
        return self.tls_active or not self.config.require_ssl

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if self.state == NOT_AUTHENTICATED:
            if self.tls_context is not None and not self.tls_active:
                caps.append("STARTTLS")
            caps.append("AUTH=PLAIN" if self.login_allowed() else "LOGINDISABLED")
        else:
            caps += ["UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "UNSELECT",
                     "NAMESPACE", "UTF8=ACCEPT", "LIST-STATUS", "LIST-EXTENDED", "QUOTA",
                     "QUOTA=RES-STORAGE"]
        if not getattr(self.config, "enable_idle", True):
            caps.remove("IDLE")
        return caps

    def do_CAPABILITY(self, tag, args):
        self.untagged("CAPABILITY " + " ".join(self.capabilities()))
        return "CAPABILITY completed"

    def do_NOOP(self, tag, args):
        if self.selected is not None:
            # RFC 3501 §6.1.2: NOOP is the client's poll; ask the store even if no
            # notification has arrived yet (another node's change may be on its way).
            self.selected.dirty = True
        return "NOOP completed"

    def do_LOGOUT(self, tag, args):
        self.untagged("BYE mailet-mta logging out")
        self.tagged(tag, "OK", "LOGOUT completed")
        self.state = LOGOUT
        self.close()

    def do_ID(self, tag, args):
        if len(args) != 1 or not (args[0] == [] or isinstance(args[0], list)
                                  or str(args[0]).upper() == "NIL"):
            raise BadCommand("ID takes NIL or a parenthesised list")
        self.untagged('ID ("name" "mailet-mta")')
        return "ID completed"

    def do_ENABLE(self, tag, args):
        if not args:
            raise BadCommand("ENABLE needs at least one capability")
        now = []
        for token in args:
            cap = astring_to_str(token).upper()
            if cap in ("CONDSTORE", "UTF8=ACCEPT", "QRESYNC") and cap not in self.enabled:
                self.enabled.add(cap)
                now.append(cap)
                if cap == "QRESYNC":          # RFC 7162 §3.2.3: implies CONDSTORE
                    self.enabled.add("CONDSTORE")
        self.untagged("ENABLED" + "".join(" " + c for c in now))
        return "ENABLE completed"

    # -- not authenticated -------------------------------------------------------------
    def do_STARTTLS(self, tag, args):
        if self.tls_context is None or self.tls_active:
            raise BadCommand("STARTTLS is not available here")
        self.tagged(tag, "OK", "begin TLS negotiation now")
        # RFC 3501 §6.2.1: nothing the client sent before the handshake is obeyed.
        self.reader.clear()
        self.transport.startTLS(self.tls_context)
        self.tls_active = True

    def _refuse_cleartext(self) -> None:
        if not self.login_allowed():
            raise CommandRefused("TLS is required before logging in: use STARTTLS first",
                                 "PRIVACYREQUIRED")

    def do_LOGIN(self, tag, args):
        self._refuse_cleartext()
        if len(args) != 2:
            raise BadCommand("LOGIN takes a user name and a password")
        return self._login(tag, astring_to_str(args[0]), astring_to_str(args[1]))

    def do_AUTHENTICATE(self, tag, args):
        if not args or not isinstance(args[0], str) or len(args) > 2:
            raise BadCommand("AUTHENTICATE takes a mechanism and an optional response")
        if args[0].upper() != "PLAIN":
            raise CommandRefused("unsupported mechanism; use PLAIN", "CANNOT")
        self._refuse_cleartext()
        if len(args) == 2:
            initial = args[1]
            if not isinstance(initial, str) or not initial.isascii():
                raise BadCommand("the initial response is base64 text")
            return self._auth_plain(tag, initial.encode("ascii"))
        self.write(b"+ \r\n")
        self._line_handler = lambda line: self._sasl_response(tag, line)
        return None

    def _sasl_response(self, tag, line):
        if line is TOO_LONG:
            return self.tagged(tag, "BAD", "authentication response too long")
        if line.strip() == b"*":
            return self.tagged(tag, "BAD", "authentication cancelled")
        d = defer.maybeDeferred(self._auth_plain, tag, line)
        d.addCallback(self._finish, tag, None)
        d.addErrback(self._failed, tag)
        return d

    def _auth_plain(self, tag, response: bytes):
        try:
            text = response.strip()
            decoded = b"" if text == b"=" else binascii.a2b_base64(text, strict_mode=True)
            authzid_b, authcid_b, password_b = decoded.split(b"\0")
            authzid, authcid = authzid_b.decode("utf-8"), authcid_b.decode("utf-8")
            password = password_b.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise BadCommand("malformed AUTHENTICATE PLAIN response") from None
        if authzid and authzid.lower() != authcid.lower():
            raise CommandRefused("logging in as another user is not allowed",
                                 "AUTHORIZATIONFAILED")
        return self._login(tag, authcid, password)

    @defer.inlineCallbacks
    def _login(self, tag, username: str, password: str):
        try:
            result = yield self.backend.check_login(username, password, self.client_ip)
        except Exception:  # noqa: BLE001 - logged; the session answers for it
            log.failure("login check failed")
            raise CommandRefused("cannot check the password now; try again later",
                                 "UNAVAILABLE") from None
        if self._lost:
            return None
        if not result.ok:
            return self._login_failed(tag, username, result)
        try:
            yield self.backend.ensure_user_folders(result.user)
        except Exception:  # noqa: BLE001 - logged; the session answers for it
            log.failure("preparing the folders of {user} failed", user=result.user)
            raise CommandRefused("cannot open the mailbox now; try again later",
                                 "UNAVAILABLE") from None
        self.user, self.state = result.user, AUTHENTICATED
        log.info("IMAP login of {user} from {ip}", user=self.user, ip=self.client_ip)
        return ("CAPABILITY " + " ".join(self.capabilities()), "logged in")

    def _login_failed(self, tag, username: str, result) -> None:
        log.info("IMAP login failed for {user!r} from {ip}", user=username,
                 ip=self.client_ip)
        if not result.verified:    # refused unchecked: too many failures from here
            self.tagged(tag, "NO", "too many failed logins from your address; try again "
                        "later", "UNAVAILABLE")
            self.untagged("BYE too many failed logins")
            return self.close()
        self._auth_failures += 1
        self.tagged(tag, "NO", "invalid user name or password", "AUTHENTICATIONFAILED")
        if result.throttled or self._auth_failures >= MAX_AUTH_FAILURES:
            self.untagged("BYE too many failed logins")
            self.close()
        return None

    # -- IDLE (RFC 2177) ---------------------------------------------------------------
    def do_IDLE(self, tag, args):
        if args:
            raise BadCommand("IDLE takes no arguments")
        if not getattr(self.config, "enable_idle", True):
            raise BadCommand("IDLE is not enabled here")
        self.write(b"+ idling\r\n")
        self.idling = True
        done: defer.Deferred = defer.Deferred()
        heartbeat = None
        every = getattr(self.config, "idle_keepalive", 0)
        if every:
            heartbeat = task.LoopingCall(self._still_here)
            if self.clock is not None:
                heartbeat.clock = self.clock
            heartbeat.start(every, now=False)

        def on_line(line):
            self.idling = False
            if heartbeat is not None and heartbeat.running:
                heartbeat.stop()
            if line is not TOO_LONG and line.strip().upper() == b"DONE":
                done.callback("IDLE terminated")
            else:
                done.errback(BadCommand("expected DONE to end IDLE"))
            return None
        self._line_handler = on_line
        if self.selected is not None and self.selected.dirty:
            self.push_changes()
        return done

    idling = False

    def _still_here(self) -> None:
        """The IDLE heartbeat: keeps NAT boxes from dropping a quiet connection. It
        does not reset the autologout timer (a client that only idles is logged out
        after the timeout, RFC 2177 asks it to re-issue IDLE before 29 minutes)."""
        if self.idling and not self._lost and not self._flow.blocked:
            self.untagged("OK still here")

    def told_of_change(self) -> None:
        """The store says the selected folder changed (another session, a delivery)."""
        if self.idling:
            self.push_changes()

    def push_changes(self) -> None:
        d = self.sync_changes(allow_expunge=True)
        d.addErrback(lambda f: log.failure("IDLE update of {user} failed", f,
                                           user=self.user))


def _code_text(code):
    """A response code, or the callable that gives it once the untagged responses
    before the tagged OK are written (``HIGHESTMODSEQ`` after EXPUNGE)."""
    return code() if callable(code) else code


def _run_in_place(fn, *args):
    return defer.maybeDeferred(fn, *args)
