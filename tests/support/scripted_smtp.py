"""A scripted SMTP server on Twisted for testing the outbound client.

Its behaviour is set on :class:`ScriptedSMTPFactory`: the EHLO capabilities, STARTTLS
with a given context, required AUTH credentials, replies to MAIL / RCPT / end of DATA
(queues consumed one per transaction, or per recipient), and dropping the connection in
the middle of DATA. Everything received is recorded: the commands of every connection
and each accepted message (envelope, unstuffed data, whether TLS and AUTH were used).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from twisted.internet import protocol
from twisted.protocols.basic import LineReceiver


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_to: list[str]
    data: bytes
    tls: bool
    auth: str | None
    connection: int
    mail_command: str = ""


@dataclass(eq=False)
class ScriptedSMTPFactory(protocol.Factory):
    """Configure a scripted SMTP peer; ``listen()`` it on 127.0.0.1:0."""

    capabilities: list[str] = field(default_factory=lambda: ["PIPELINING", "SIZE 10485760",
                                                            "8BITMIME"])
    tls_context: object = None                 # offer STARTTLS with this server context
    auth: tuple[str, str] | None = None        # require AUTH with these credentials
    mail_replies: list[str] = field(default_factory=list)    # consumed per MAIL
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)  # per address, consumed
    data_replies: list[str] = field(default_factory=list)    # consumed per end of DATA
    drop_in_data: int = 0                      # drop this many transactions mid-DATA
    greeting: str = "220 scripted.test ESMTP"
    starttls_injection: bytes = b""            # plaintext sent right after the 220
    tls_broken: bool = False                   # close after the 220 instead of TLS
    ehlo_supported: bool = True

    def __post_init__(self):
        self.messages: list[Received] = []
        self.commands: list[list[str]] = []
        self.connections = 0

    def buildProtocol(self, addr):
        p = ScriptedSMTP(self, self.connections)
        self.connections += 1
        self.commands.append([])
        return p

    def all_commands(self) -> list[str]:
        return [c for conn in self.commands for c in conn]


class ScriptedSMTP(LineReceiver):
    """The server side; see :class:`ScriptedSMTPFactory`."""

    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, factory: ScriptedSMTPFactory, number: int):
        self.f = factory
        self.number = number
        self.tls = False
        self.authed: str | None = None
        self.reset()
        self.in_data = False
        self.dropped = False
        self.auth_login: list[str] | None = None

    def reset(self):
        self.mail_from = None
        self.mail_command = ""
        self.rcpts: list[str] = []
        self.data: list[bytes] = []

    def reply(self, text: str):
        self.sendLine(text.encode())

    def connectionMade(self):
        self.reply(self.f.greeting)

    def lineReceived(self, line: bytes):
        if self.dropped:
            return
        if self.in_data:
            return self._data_line(line)
        text = line.decode("utf-8", "replace")
        self.f.commands[self.number].append(text)
        if self.auth_login is not None:
            return self._auth_login_step(text)
        verb, _, arg = text.partition(" ")
        handler = getattr(self, "do_" + verb.upper(), None)
        if handler is None:
            return self.reply("500 5.5.1 unknown command")
        handler(arg)

    # -- commands ------------------------------------------------------------------------
    def do_EHLO(self, arg):
        if not self.f.ehlo_supported:
            return self.reply("502 5.5.1 EHLO not implemented")
        caps = list(self.f.capabilities)
        if self.f.tls_context is not None and not self.tls:
            caps.append("STARTTLS")
        if self.f.auth:
            caps.append("AUTH PLAIN LOGIN")
        lines = ["scripted.test"] + caps
        for i, cap in enumerate(lines):
            self.reply(("250 " if i == len(lines) - 1 else "250-") + cap)

    def do_HELO(self, arg):
        self.reply("250 scripted.test")

    def do_STARTTLS(self, arg):
        if self.f.tls_context is None or self.tls:
            return self.reply("502 5.5.1 no TLS here")
        self.reply("220 2.0.0 go ahead")
        if self.f.tls_broken:
            self.dropped = True
            return self.transport.loseConnection()
        if self.f.starttls_injection:
            self.transport.write(self.f.starttls_injection)
        self.transport.startTLS(self.f.tls_context)
        self.tls = True
        self.reset()

    def do_AUTH(self, arg):
        mech, _, initial = arg.partition(" ")
        if mech.upper() == "PLAIN":
            parts = base64.b64decode(initial).split(b"\0")
            return self._auth_check(parts[1].decode(), parts[2].decode())
        if mech.upper() == "LOGIN":
            self.auth_login = []
            return self.reply("334 VXNlcm5hbWU6")
        self.reply("504 5.5.4 mechanism not supported")

    def _auth_login_step(self, text):
        self.auth_login.append(base64.b64decode(text).decode())
        if len(self.auth_login) == 1:
            return self.reply("334 UGFzc3dvcmQ6")
        user, password = self.auth_login
        self.auth_login = None
        self._auth_check(user, password)

    def _auth_check(self, user, password):
        if self.f.auth == (user, password):
            self.authed = user
            return self.reply("235 2.7.0 authenticated")
        self.reply("535 5.7.8 bad credentials")

    def do_MAIL(self, arg):
        if self.f.auth and not self.authed:
            return self.reply("530 5.7.0 authentication required")
        reply = self.f.mail_replies.pop(0) if self.f.mail_replies else "250 2.1.0 ok"
        if reply.startswith("250"):
            self.mail_from = arg.split(":", 1)[1].split(">")[0].lstrip("<")
            self.mail_command = "MAIL " + arg
        self.reply(reply)

    def do_RCPT(self, arg):
        if self.mail_from is None:
            return self.reply("503 5.5.1 need MAIL first")
        address = arg.split(":", 1)[1].split(">")[0].lstrip("<")
        queue = self.f.rcpt_replies.get(address)
        reply = queue.pop(0) if queue else "250 2.1.5 ok"
        if reply.startswith("250"):
            self.rcpts.append(address)
        self.reply(reply)

    def do_DATA(self, arg):
        if not self.rcpts:
            return self.reply("503 5.5.1 need RCPT first")
        self.in_data = True
        self.reply("354 go ahead")

    def do_RSET(self, arg):
        self.reset()
        self.reply("250 2.0.0 reset")

    def do_NOOP(self, arg):
        self.reply("250 2.0.0 ok")

    def do_QUIT(self, arg):
        self.reply("221 2.0.0 bye")
        self.transport.loseConnection()

    # -- DATA -------------------------------------------------------------------------------------
    def _data_line(self, line: bytes):
        if self.f.drop_in_data > 0:
            self.f.drop_in_data -= 1
            self.dropped = True
            self.clearLineBuffer()
            self.transport.abortConnection()
            return
        if line == b".":
            self.in_data = False
            reply = self.f.data_replies.pop(0) if self.f.data_replies else "250 2.0.0 queued"
            if reply.startswith("250"):
                self.f.messages.append(Received(
                    self.mail_from, list(self.rcpts), b"".join(self.data), self.tls,
                    self.authed, self.number, self.mail_command))
            self.reset()
            return self.reply(reply)
        if line.startswith(b"."):
            line = line[1:]
        self.data.append(line + b"\r\n")
