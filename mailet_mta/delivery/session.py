"""One outbound SMTP session: connect, EHLO (HELO fallback), STARTTLS, AUTH, then any
number of mail transactions on the same connection.

A transaction answers per recipient with an :class:`Outcome`: ``sent``, ``failed``
(permanent: it will bounce) or ``deferred`` (temporary: try the next host, then later).
Anything that makes the host unusable as a whole raises :class:`HostFailure`.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field

from twisted.internet import ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol

from .options import DeliveryOptions
from .smtp_client import Reply, SMTPClientProtocol, SMTPConnectionLost

SENT, FAILED, DEFERRED = "sent", "failed", "deferred"


class HostFailure(Exception):
    """This host cannot take mail now; ``tls_failed`` when the TLS handshake broke."""

    def __init__(self, message: str, code: int | None = None, tls_failed: bool = False,
                 starttls_missing: bool = False):
        super().__init__(message)
        self.code = code
        self.tls_failed = tls_failed
        self.starttls_missing = starttls_missing


@dataclass
class Outcome:
    """What happened to one recipient on one host."""

    status: str                     # sent | failed | deferred
    code: int | None
    text: str

    @property
    def permanent(self) -> bool:
        return self.status == FAILED


@dataclass
class Envelope:
    """What one transaction sends: sender, recipients, the message and its needs."""

    sender: str | None
    recipients: list[str]
    source: object                  # MessageSource
    size: int
    body: str | None = None         # None | 7BIT | 8BITMIME | BINARYMIME
    smtputf8: bool = False
    envid: str | None = None
    ret: str | None = None
    dsn_rcpt: dict = field(default_factory=dict)

    @property
    def needs_utf8(self) -> bool:
        return self.smtputf8 or not (self.sender or "").isascii() or not all(
            r.isascii() for r in self.recipients)


def xtext(value: str) -> str:
    """RFC 3461 §4 xtext encoding (for ENVID and ORCPT)."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else
                   "".join(f"+{b:02X}" for b in c.encode("utf-8")) for c in value)


async def _all_replies(waiters) -> list[Reply]:
    """Await every pipelined reply (so none is left unhandled), then raise the first error."""
    replies, error = [], None
    for d in waiters:
        try:
            replies.append(await d)
        except SMTPConnectionLost as exc:
            error = error or exc
    if error is not None:
        raise error
    return replies


def _client_tls(hostname: str, verify: bool, trust_root=None):
    if verify:
        return ssl.optionsForClientTLS(hostname, trustRoot=trust_root)
    return ssl.CertificateOptions()


class SMTPSession:
    """An open, greeted (and maybe TLS-protected, authenticated) SMTP connection."""

    def __init__(self, protocol: SMTPClientProtocol, host: str, ip: str, port: int):
        self.protocol = protocol
        self.host, self.ip, self.port = host, ip, port
        self.extensions: dict[str, str] = {}
        self.tls = False
        self.transactions = 0
        self._dirty = False

    @property
    def peer(self) -> str:
        return f"{self.host} [{self.ip}]"

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    async def open(cls, reactor, clock, host: str, ip: str, port: int,
                   options: DeliveryOptions, helo: str, use_tls: bool = True,
                   password: str | None = None, trust_root=None, dane=None):
        """Connect and get ready for MAIL (logging in as ``options.username`` with
        ``password`` when a user is set); raises HostFailure. ``trust_root`` (Twisted's
        IOpenSSLTrustRoot) verifies the certificate; default the system's. ``dane``
        (a :class:`~.dane.DANEPolicy`) requires STARTTLS and checks the certificate
        against the host's TLSA records instead."""
        endpoint_type = (TCP6ClientEndpoint if ipaddress.ip_address(ip).version == 6
                         else TCP4ClientEndpoint)
        endpoint = endpoint_type(reactor, ip, port, timeout=options.connection_timeout)
        protocol = SMTPClientProtocol(clock, options.timeout)
        try:
            await connectProtocol(endpoint, protocol)
        except Exception as exc:  # noqa: BLE001 - every connect error means "next host"
            raise HostFailure(f"cannot connect to {host} [{ip}]:{port}: {exc}") from None
        session = cls(protocol, host, ip, port)
        try:
            await session._start(options, helo, use_tls, password, trust_root, dane)
        except SMTPConnectionLost as exc:
            raise HostFailure(f"{session.peer}: {exc}") from None
        except BaseException:
            session.protocol.abort()
            raise
        return session

    async def _start(self, options: DeliveryOptions, helo: str, use_tls: bool,
                     password: str | None = None, trust_root=None, dane=None) -> None:
        greeting = await self.protocol.greeting
        if greeting.code != 220:
            await self.quit()
            raise HostFailure(f"{self.peer} greeted with: {greeting}", greeting.code)
        await self._hello(helo)
        offered = "STARTTLS" in self.extensions
        if dane is not None:
            if not offered:
                await self.quit()
                raise HostFailure(f"{self.peer} does not offer STARTTLS and its TLSA "
                                  f"records require it (DANE)", starttls_missing=True)
            await self._dane_starttls(dane, helo)
        elif options.starttls != "never" and use_tls and offered:
            await self._starttls(options, helo, trust_root)
        elif options.starttls == "required":
            await self.quit()
            raise HostFailure(f"{self.peer} does not offer STARTTLS and startTLS=required",
                              starttls_missing=True)
        if options.username:
            if not self.tls and not ipaddress.ip_address(self.ip).is_loopback:
                await self.quit()
                raise HostFailure(f"{self.peer}: not sending the gateway password over an "
                                  f"unencrypted connection; the gateway must offer STARTTLS")
            await self._auth(options.username, password or "")

    async def _hello(self, helo: str) -> None:
        reply = await self.protocol.command(f"EHLO {helo}")
        if reply.code == 250:
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params.strip()
            return
        if not reply.permanent:
            raise HostFailure(f"{self.peer} refused EHLO: {reply}", reply.code)
        reply = await self.protocol.command(f"HELO {helo}")
        if reply.code != 250:
            raise HostFailure(f"{self.peer} refused HELO: {reply}", reply.code)
        self.extensions = {}

    async def _starttls(self, options: DeliveryOptions, helo: str, trust_root=None) -> None:
        reply = await self.protocol.start_tls(
            _client_tls(self.host, options.verify_server_identity, trust_root))
        if reply.code != 220:
            if options.starttls == "required":
                raise HostFailure(f"{self.peer} refused STARTTLS: {reply}", reply.code)
            return
        try:
            await self._hello(helo)
        except SMTPConnectionLost as exc:
            raise HostFailure(f"{self.peer}: TLS handshake failed: {exc}",
                              tls_failed=True) from None
        self.tls = True

    async def _dane_starttls(self, dane, helo: str) -> None:
        from .dane import DANEConnectionCreator

        creator = DANEConnectionCreator(dane)
        reply = await self.protocol.start_tls(creator)
        if reply.code != 220:
            raise HostFailure(f"{self.peer} refused STARTTLS: {reply}", reply.code,
                              starttls_missing=True)
        try:
            await self._hello(helo)
        except SMTPConnectionLost as exc:
            raise HostFailure(f"{self.peer}: TLS handshake failed: {exc}",
                              tls_failed=True) from None
        problem = creator.check()
        if problem is not None:
            raise HostFailure(f"{self.peer}: DANE: {problem}", tls_failed=True)
        self.tls = True

    async def _auth(self, username: str, password: str) -> None:
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            reply = await self.protocol.command(f"AUTH PLAIN {token}")
        elif "LOGIN" in mechanisms:
            reply = await self.protocol.command("AUTH LOGIN")
            for value in (username, password):
                if reply.code != 334:
                    break
                reply = await self.protocol.command(base64.b64encode(value.encode()).decode())
        else:
            raise HostFailure(f"{self.peer} offers no AUTH PLAIN or LOGIN for the gateway "
                              f"credentials (offered: {' '.join(mechanisms) or 'none'})")
        if reply.code != 235:
            raise HostFailure(f"{self.peer}: authentication as {username} failed: {reply}",
                              reply.code)

    # -- transactions ------------------------------------------------------------------------
    def _refusal(self, env: Envelope) -> Outcome | None:
        """A permanent failure decided before MAIL: the host cannot take this mail."""
        ext = self.extensions
        if env.needs_utf8 and "SMTPUTF8" not in ext:
            return Outcome(FAILED, 553, f"5.6.7 {self.peer} does not support SMTPUTF8, "
                                        f"which this mail needs")
        if env.body == "BINARYMIME":
            return Outcome(FAILED, 554, f"5.6.3 binary MIME content cannot be relayed to "
                                        f"{self.peer}")
        if env.body == "8BITMIME" and "8BITMIME" not in ext:
            return Outcome(FAILED, 554, f"5.6.3 {self.peer} does not support 8BITMIME, "
                                        f"which this mail needs")
        limit = ext.get("SIZE", "")
        if limit.isdigit() and int(limit) > 0 and env.size > int(limit):
            return Outcome(FAILED, 552, f"5.3.4 the message ({env.size} octets) exceeds the "
                                        f"size limit of {self.peer} ({limit} octets)")
        return None

    def _mail_command(self, env: Envelope) -> str:
        params = []
        if "SIZE" in self.extensions:
            params.append(f"SIZE={env.size}")
        if env.body == "8BITMIME":
            params.append("BODY=8BITMIME")
        if env.needs_utf8:
            params.append("SMTPUTF8")
        if "DSN" in self.extensions:
            if env.ret in ("FULL", "HDRS"):
                params.append(f"RET={env.ret}")
            if env.envid:
                params.append(f"ENVID={xtext(env.envid)}")
        return " ".join([f"MAIL FROM:<{env.sender or ''}>"] + params)

    def _rcpt_command(self, env: Envelope, address: str) -> str:
        params = []
        dsn = env.dsn_rcpt.get(address) or {}
        if "DSN" in self.extensions:
            if dsn.get("notify"):
                params.append("NOTIFY=" + ",".join(n.upper() for n in dsn["notify"]))
            if dsn.get("orcpt"):
                kind, _, value = str(dsn["orcpt"]).partition(";")
                params.append(f"ORCPT={kind};{xtext(value)}" if value else "")
        return " ".join([f"RCPT TO:<{address}>"] + [p for p in params if p])

    def _outcome(self, reply: Reply) -> Outcome:
        status = SENT if reply.positive else FAILED if reply.permanent else DEFERRED
        return Outcome(status, reply.code, f"{self.peer} said: {reply}")

    async def deliver(self, env: Envelope, send_partial: bool) -> dict[str, Outcome]:
        """Run one transaction; raises SMTPConnectionLost when the connection breaks."""
        refusal = self._refusal(env)
        if refusal is not None:
            return {r: refusal for r in env.recipients}
        pipelining = "PIPELINING" in self.extensions
        commands = [self._mail_command(env)] + [self._rcpt_command(env, r)
                                                for r in env.recipients]
        if self.transactions or self._dirty:
            commands.insert(0, "RSET")
        self.transactions += 1
        if pipelining:
            replies = await _all_replies(self.protocol.send(*commands))
        else:
            replies = await self._send_stepwise(commands)
        if commands[0] == "RSET":
            rset, replies = replies[0], replies[1:]
            if rset is not None and rset.code != 250:
                raise SMTPConnectionLost(f"{self.peer} refused RSET: {rset}")
        self._dirty = True
        mail_reply, rcpt_replies = replies[0], replies[1:]
        if not mail_reply.positive:
            return {r: self._outcome(mail_reply) for r in env.recipients}
        outcomes = {r: self._outcome(rep) for r, rep in zip(env.recipients, rcpt_replies)}
        accepted = [r for r in env.recipients if outcomes[r].status == SENT]
        if not accepted:
            return outcomes
        if not send_partial and len(accepted) < len(env.recipients):
            refused = next(o for o in outcomes.values() if o.status != SENT)
            for r in accepted:
                outcomes[r] = Outcome(DEFERRED, None, f"not sent, because another recipient "
                                      f"was refused and sendpartial is false ({refused.text})")
            return outcomes
        data_reply = await self.protocol.command("DATA")
        if data_reply.code != 354:
            outcome = (self._outcome(data_reply) if not data_reply.positive else
                       Outcome(DEFERRED, data_reply.code, f"{self.peer} said: {data_reply}"))
            return {**outcomes, **{r: outcome for r in accepted}}
        final = await self.protocol.send_body(env.source)
        self._dirty = False
        for r in accepted:
            outcomes[r] = self._outcome(final)
        return outcomes

    async def _send_stepwise(self, commands: list[str]) -> list[Reply | None]:
        """Without PIPELINING: one command at a time, no RCPT after a refused MAIL."""
        replies: list[Reply | None] = []
        for i, command in enumerate(commands):
            reply = await self.protocol.command(command)
            replies.append(reply)
            if command.startswith("MAIL") and not reply.positive:
                replies.extend([None] * (len(commands) - i - 1))
                break
        return replies

    async def quit(self) -> None:
        """Say QUIT (without waiting long) and close."""
        if self.protocol.is_open:
            try:
                d = self.protocol.command("QUIT")
                await d
            except SMTPConnectionLost:
                pass
            finally:
                if self.protocol.transport is not None:
                    self.protocol.transport.loseConnection()
