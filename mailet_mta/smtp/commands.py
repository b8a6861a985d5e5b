"""The SMTP verbs (RFC 5321 §4.1, plus STARTTLS and AUTH), one method each.

A ``do_<VERB>(arg)`` method queues its reply with ``self.reply`` and returns None, or
returns a Deferred when the answer must wait (AUTH, end of data); the protocol then
holds further input until it fires.
"""

from __future__ import annotations

import base64

from twisted.internet import defer
from twisted.logger import Logger

from .. import metrics
from ..address import MailAddress, MailAddressError
from .backend import AuthThrottled
from .envelope import Envelope
from .params import (
    CommandSyntaxError,
    parse_envid,
    parse_forward_path,
    parse_notify,
    parse_orcpt,
    parse_reverse_path,
    split_path_and_params,
)
from .sasl import MECHANISMS, SASLError, decode_response

log = Logger()

_HELP = {
    "HELO": "HELO <hostname>", "EHLO": "EHLO <hostname>",
    "MAIL": "MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8] [RET=] [ENVID=]",
    "RCPT": "RCPT TO:<address> [NOTIFY=] [ORCPT=]", "DATA": "DATA",
    "BDAT": "BDAT <size> [LAST]", "RSET": "RSET", "NOOP": "NOOP", "QUIT": "QUIT",
    "VRFY": "VRFY <address>", "HELP": "HELP [command]", "STARTTLS": "STARTTLS",
    "AUTH": "AUTH PLAIN|LOGIN [initial-response]",
}


class CommandsMixin:
    """HELO … QUIT for :class:`mailet_mta.smtp.protocol.SMTPServerProtocol`."""

    # -- greeting and session ------------------------------------------------------
    def do_HELO(self, arg):
        if not arg.split():   # also "HELO \x0c": whitespace only is no hostname
            return self.reply(501, "5.5.4", "Syntax: HELO <hostname>")
        self.session.helo, self.session.esmtp = arg.split()[0], False
        self.reset_transaction()
        self.reply(250, None, self.server_name)

    def do_EHLO(self, arg):
        if not arg.split():
            return self.reply(501, "5.5.4", "Syntax: EHLO <hostname>")
        self.session.helo, self.session.esmtp = arg.split()[0], True
        self.reset_transaction()
        self.reply(250, None, [f"{self.server_name} Hello {self.session.helo} "
                               f"[{self.session.remote_ip}]"] + self.extensions())

    def extensions(self) -> list[str]:
        """The EHLO keywords offered to this client now."""
        size = self.config.max_message_size
        ext = ["PIPELINING", f"SIZE {size}" if size else "SIZE", "8BITMIME",
               "ENHANCEDSTATUSCODES"]
        if self._starttls_available():
            ext.append("STARTTLS")
        if self._auth_offered() and (self.session.tls or not self.config.require_ssl):
            ext.append("AUTH " + " ".join(MECHANISMS))
        ext += ["SMTPUTF8", "CHUNKING", "DSN"]
        return ext

    def _starttls_available(self) -> bool:
        return (self.tls_context is not None and self.config.starttls
                and not self.session.tls and hasattr(self.transport, "startTLS"))

    def _auth_offered(self) -> bool:
        return self.policy.offers_auth(self.session.authorized_network)

    def reset_transaction(self) -> None:
        self._abort_body()
        self.envelope = None

    def do_RSET(self, arg):
        self.reset_transaction()
        self.reply(250, "2.0.0", "Ok")

    def do_NOOP(self, arg):
        self.reply(250, "2.0.0", "Ok")

    def do_QUIT(self, arg):
        self.close_with(221, "2.0.0", "Bye")

    def do_VRFY(self, arg):
        if not arg:
            return self.reply(501, "5.5.4", "Syntax: VRFY <address>")
        if not self.config.enable_vrfy:
            return self.reply(252, "2.5.2", "Cannot VRFY user, but will accept message "
                              "and attempt delivery")
        text = arg if "<" in arg else f"<{arg}>"
        try:
            addr = parse_forward_path(text, self.server_name)
        except MailAddressError:
            try:
                addr = MailAddress(arg, self.server_name)
            except MailAddressError as exc:
                return self.reply(501, "5.1.3", f"Bad address: {exc}")
        if self._is_local_domain(addr) and self._known_local(addr):
            return self.reply(250, "2.1.5", f"<{addr}>")
        self.reply(550, "5.1.1", f"<{addr}>: User unknown")

    def do_EXPN(self, arg):
        self.reply(502, "5.5.1", "EXPN not supported")

    def do_HELP(self, arg):
        words = arg.split()      # (str.split also splits on the control characters 0x1c-0x1f)
        if not words:
            return self.reply(214, "2.0.0", ["Commands:", " ".join(_HELP),
                                             "See RFC 5321 for details"])
        topic = _HELP.get(words[0].upper())
        if topic is None:
            return self.reply(504, "5.5.4", f"HELP topic {words[0]!r} unknown")
        self.reply(214, "2.0.0", topic)

    def _obsolete(self, arg):
        self.reply(502, "5.5.1", "Command not implemented")

    do_SEND = do_SOML = do_SAML = do_TURN = _obsolete

    # -- STARTTLS (RFC 3207) -------------------------------------------------------
    def do_STARTTLS(self, arg):
        if arg:
            return self.reply(501, "5.5.4", "Syntax: STARTTLS")
        if self.session.tls:
            return self.reply(503, "5.5.1", "TLS already active")
        if not self._starttls_available():
            return self.reply(454, "4.7.0", "TLS not available")
        if self._buf:
            log.warn("discarding {n} octets pipelined after STARTTLS from {ip}",
                     n=len(self._buf), ip=self.session.remote_ip)
            self._buf.clear()
        self.reply(220, "2.0.0", "Ready to start TLS")
        self.flush()
        self.transport.startTLS(self.tls_context)
        s = self.session
        s.tls, s.helo, s.esmtp, s.auth_user = True, None, False, None
        self.reset_transaction()

    # -- AUTH (RFC 4954) -----------------------------------------------------------
    def do_AUTH(self, arg):
        if not self.session.esmtp:      # AUTH is an EHLO extension (RFC 4954 §4)
            return self.reply(503, "5.5.1", "Error: send EHLO first")
        if not self._auth_offered():
            return self.reply(503, "5.5.1", "Error: authentication not enabled")
        if self.config.require_ssl and not self.session.tls:
            return self.reply(538, "5.7.11", "Encryption required for requested "
                              "authentication mechanism")
        if self.session.auth_user is not None:
            return self.reply(503, "5.5.1", "Already authenticated")
        if self.envelope is not None:
            return self.reply(503, "5.5.1", "AUTH not permitted during a mail transaction")
        words = arg.split()
        if not words or len(words) > 2:
            return self.reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
        factory = MECHANISMS.get(words[0].upper())
        if factory is None:
            return self.reply(504, "5.5.4", "Unrecognized authentication type")
        self._auth = factory()
        if len(words) == 1:
            return self._auth_step(None)
        return self.auth_response(words[1])

    def auth_response(self, line: str):
        """A client line while a SASL exchange is in progress."""
        if line.strip() == "*":
            self._auth = None
            return self.reply(501, "5.0.0", "Authentication cancelled")
        try:
            response = decode_response(line)
        except SASLError as exc:
            self._auth = None
            return self.reply(501, "5.5.2", str(exc))
        return self._auth_step(response)

    def _auth_step(self, response):
        try:
            kind, value = self._auth.step(response)
        except SASLError as exc:
            self._auth = None
            return self.reply(501, "5.5.2", str(exc))
        if kind == "challenge":
            return self.reply(334, None, base64.b64encode(value).decode("ascii"))
        self._auth = None
        username, password, authzid = value
        if authzid:
            # Acting as another user: only the web mail's internal credential, and
            # only where the backend allows it; everyone else gets 535.
            proxy = getattr(self.backend, "authenticate_for", None)
            d = (defer.succeed(None) if proxy is None else
                 proxy(authzid, username, password, self.session.remote_ip))
        else:
            d = self.backend.authenticate(username, password, self.session.remote_ip)
        d.addCallbacks(self._auth_result, self._auth_error)
        return d

    def _auth_result(self, user):
        if not user:
            delay = self.config.auth_failure_delay
            if delay and delay > 0 and not self._lost:
                # The listener's failure delay, without blocking; input stays paused.
                d = defer.Deferred()
                self._auth_delay = self.callLater(delay, lambda: d.callback(None))
                d.addCallback(lambda _: self.reply(535, "5.7.8",
                                                   "Authentication credentials invalid"))
                return d
            return self.reply(535, "5.7.8", "Authentication credentials invalid")
        if self._lost:
            return
        self.session.auth_user = user
        self.reply(235, "2.7.0", "Authentication successful")

    def _auth_error(self, failure):
        if failure.check(AuthThrottled):   # RFC 4954 §6: temporary, not "wrong password"
            log.info("AUTH from {ip} throttled", ip=self.session.remote_ip)
            return self.reply(454, "4.7.0", "Too many authentication attempts from your "
                              "address; try again later")
        log.failure("authentication backend failed", failure)
        self.reply(454, "4.7.0", "Temporary authentication failure")

    # -- MAIL ----------------------------------------------------------------------
    def do_MAIL(self, arg):
        if self.session.helo is None and self.config.helo_required:
            return self.reply(503, "5.5.1", "Error: send HELO/EHLO first")
        if self.envelope is not None:
            return self.reply(503, "5.5.1", "Error: nested MAIL command")
        if self.config.auth_before_mail and self.session.auth_user is None:
            return self.reply(530, "5.7.0", "Authentication required")
        try:
            path, params = split_path_and_params(arg, "FROM")
            sender = parse_reverse_path(path)
            env = Envelope(sender)
            refusal = self._mail_params(env, params)
        except CommandSyntaxError as exc:
            return self.reply(501, "5.5.4", str(exc))
        except MailAddressError as exc:
            return self.reply(553, "5.1.7", f"Bad sender address syntax: {exc}")
        if refusal is None and not path.isascii() and not env.smtputf8:
            refusal = (553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter")
        if refusal is None:
            refusal = self._sender_refusal(sender)
        if refusal is not None:
            return self.reply(*refusal)
        self.envelope = env
        metrics.SMTP_TRANSACTIONS.inc()
        self.reply(250, "2.1.0", f"Sender <{sender or ''}> OK")

    def _mail_params(self, env: Envelope, params: dict):
        if params and not self.session.esmtp:
            return (555, "5.5.4", "MAIL parameters need EHLO")
        for key, value in params.items():
            if key == "SIZE":
                if not value or not value.isdigit():
                    raise CommandSyntaxError("SIZE needs a number")
                env.declared_size = int(value)
                limit = self.config.max_message_size
                if limit and env.declared_size > limit:
                    return (552, "5.3.4", "Message size exceeds fixed maximum message size")
            elif key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    raise CommandSyntaxError(f"BODY={value} not supported")
                env.body = value.upper()
            elif key == "SMTPUTF8" and value is None:
                env.smtputf8 = True
            elif key == "RET" and (value or "").upper() in ("FULL", "HDRS"):
                env.ret = value.upper()
            elif key == "ENVID" and value:
                env.envid = parse_envid(value)
            elif key == "AUTH" and value:
                pass  # RFC 4954 §5: we do not trust the claimed submitter; ignored
            elif key in ("SMTPUTF8", "RET", "ENVID", "AUTH"):
                raise CommandSyntaxError(f"invalid {key} parameter")
            else:
                return (555, "5.5.4", f"Unsupported parameter {key}")
        return None

    def _sender_refusal(self, sender):
        s = self.session
        local = sender is not None and self._is_local_domain(sender)
        identities = self.backend.identities_of(s.auth_user) if (
            local and s.auth_user is not None) else ()
        return self.policy.sender_refusal(
            sender, local, s.auth_user, identities,
            self.policy.may_relay(s.authorized_network, s.auth_user), self._auth_offered())

    # -- RCPT ----------------------------------------------------------------------
    def do_RCPT(self, arg):
        env = self.envelope
        if env is None:
            return self.reply(503, "5.5.1", "Error: need MAIL command")
        if env.bdat_used:
            return self.reply(503, "5.5.1", "Error: RCPT after BDAT")
        try:
            path, params = split_path_and_params(arg, "TO")
            rcpt = parse_forward_path(path, self.backend.server_name)
            dsn = self._rcpt_params(params)
        except CommandSyntaxError as exc:
            return self.reply(501, "5.5.4", str(exc))
        except MailAddressError as exc:
            return self.reply(553, "5.1.3", f"Bad recipient address syntax: {exc}")
        if isinstance(dsn, tuple):
            return self.reply(*dsn)
        if not path.isascii() and not env.smtputf8:
            return self.reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8 on MAIL")
        limit = self.config.max_recipients
        if limit and env.rcpt_count >= limit:   # RFC 5321 §4.5.3.1.10: commands, not
            return self.reply(452, "4.5.3", "Error: too many recipients")  # addresses
        if path[1:-1].strip().lower() == "postmaster":  # RFC 5321 §4.5.1: always taken
            rcpt = getattr(self.backend, "postmaster", None) or rcpt
            verdict = (250, "2.1.5", f"Recipient <{rcpt}> OK")
        else:
            verdict = self._recipient_verdict(rcpt)
        if verdict[0] >= 400:
            return self.reply(*verdict)
        env.rcpt_count += 1
        if rcpt not in env.recipients:
            env.recipients.append(rcpt)
        if dsn:
            env.dsn_rcpt[str(rcpt)] = dsn
        self.reply(*verdict)

    def _rcpt_params(self, params: dict):
        if params and not self.session.esmtp:
            return (555, "5.5.4", "RCPT parameters need EHLO")
        dsn = {}
        for key, value in params.items():
            if key == "NOTIFY":
                dsn["notify"] = parse_notify(value)
            elif key == "ORCPT":
                dsn["orcpt"] = parse_orcpt(value)
            else:
                return (555, "5.5.4", f"Unsupported parameter {key}")
        return dsn

    def _recipient_verdict(self, rcpt: MailAddress) -> tuple[int, str, str]:
        if not self._is_local_domain(rcpt):
            s = self.session
            if self.policy.may_relay(s.authorized_network, s.auth_user):
                return (250, "2.1.5", f"Recipient <{rcpt}> OK")
            if self._auth_offered():
                return (530, "5.7.1", "Authentication required")
            return (550, "5.7.1", f"<{rcpt}>: Relaying denied")
        lookup = self._as_local(rcpt)
        if lookup.local_part.lower() == "postmaster":
            return (250, "2.1.5", f"Recipient <{rcpt}> OK")
        try:
            known = self.backend.is_local_address(lookup)
            redirect = getattr(self.backend, "redirect_of", lambda a: None)(lookup)
        except Exception:  # noqa: BLE001 - a directory failure is temporary for the client
            log.failure("recipient lookup failed for {rcpt}", rcpt=str(rcpt))
            return (450, "4.3.0", f"<{rcpt}>: Temporary lookup failure, try again later")
        if redirect is not None:
            kind, target = redirect
            if kind == "moved":
                return (551, "5.1.6", f"User not local; please try <{target}>")
            return (251, "2.1.5", f"User not local; will forward to <{target}>")
        if not known and self.config.reject_unknown_local_users:
            refusal = getattr(self.backend, "refusal_of", lambda a: None)(lookup)
            return refusal or (550, "5.1.1", f"<{rcpt}>: Recipient address rejected: "
                                             f"User unknown")
        return self._quota_verdict(rcpt, lookup)

    def _quota_verdict(self, rcpt, lookup):
        quota_ok = getattr(self.backend, "quota_ok", None)
        if quota_ok is not None:
            try:
                ok = quota_ok(lookup, self.envelope.declared_size)
            except Exception:  # noqa: BLE001 - the mailbox store is unavailable now
                log.failure("quota check failed for {rcpt}", rcpt=str(rcpt))
                return (450, "4.2.1", f"<{rcpt}>: Mailbox temporarily unavailable")
            if not ok:
                return (552, "5.2.2", f"<{rcpt}>: Mailbox full")
        return (250, "2.1.5", f"Recipient <{rcpt}> OK")

    # -- local domains -------------------------------------------------------------
    def _is_local_domain(self, addr: MailAddress) -> bool:
        if addr.is_ip_literal:
            return addr.domain == _literal_of(self.session.local_ip) or \
                self.backend.is_local_domain(addr.domain)
        return self.backend.is_local_domain(addr.domain)

    def _as_local(self, addr: MailAddress) -> MailAddress:
        """An address at an IP literal of this host, as the same user at server_name."""
        if addr.is_ip_literal and not self.backend.is_local_domain(addr.domain):
            return MailAddress(addr.local_part, self.server_name)
        return addr

    def _known_local(self, addr: MailAddress) -> bool:
        lookup = self._as_local(addr)
        try:
            return lookup.local_part.lower() == "postmaster" or \
                bool(self.backend.is_local_address(lookup))
        except Exception:  # noqa: BLE001
            return False


def _literal_of(ip: str) -> str:
    try:
        return MailAddress("x", f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]").domain
    except MailAddressError:
        return ""
