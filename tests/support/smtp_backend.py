"""An ISMTPBackend for tests, built from real pieces: a BlobStore on disk, users and
aliases in dicts, accepted mails kept in a list."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from zope.interface import implementer

from mailet_mta.address import MailAddress
from mailet_mta.config.model import SMTPServerConfig
from mailet_mta.smtp.backend import ISMTPBackend
from mailet_mta.storage.blobs import BlobStore


@implementer(ISMTPBackend)
class RecordingBackend:
    """Local domains ``example.com`` and ``example.org``; users alice and bob.

    ``accepted`` holds ``(mail, blob_ref)``. Set ``accept_error`` to make accept fail,
    ``auth_deferred`` to a Deferred to hold AUTH answers until the test fires it, and
    ``accept_gate`` to a Deferred to hold accept until the test fires it.
    """

    def __init__(self, blob_root: str | Path, inline_limit: int = 4096):
        self.server_name = "mx.example.com"
        self.blobs = BlobStore(blob_root, inline_limit=inline_limit)
        self.domains = {"example.com", "example.org"}
        self.users = {"alice": "secret", "bob": "hunter2"}
        self.addresses = {"alice@example.com": "alice", "bob@example.com": "bob",
                          "info@example.com": "alice", "alice@example.org": "alice"}
        self.accepted: list = []
        self.auth_calls: list = []
        self.accept_error: Exception | None = None
        self.auth_deferred: defer.Deferred | None = None
        self.accept_gate: defer.Deferred | None = None
        self.full_mailboxes: set[str] = set()
        self.broken_lookup = False
        self.redirects: dict[str, tuple[str, MailAddress]] = {}

    def is_local_domain(self, domain):
        return domain in self.domains

    def is_local_address(self, addr):
        if self.broken_lookup:
            raise RuntimeError("directory down")
        return str(addr).lower() in self.addresses

    def identities_of(self, user):
        return {MailAddress.parse(a) for a, u in self.addresses.items() if u == user}

    def authenticate(self, username, password, client_ip):
        self.auth_calls.append((username, password, client_ip))
        result = username if self.users.get(username) == password else None
        if self.auth_deferred is not None:
            d, self.auth_deferred = self.auth_deferred, None
            d.addCallback(lambda _: result)
            return d
        return defer.succeed(result)

    def new_blob_writer(self):
        return self.blobs.writer()

    def accept(self, mail, blob):
        if self.accept_error is not None:
            return defer.fail(self.accept_error)
        if self.accept_gate is not None:
            d, self.accept_gate = self.accept_gate, None
            d.addCallback(lambda _: self.accepted.append((mail, blob)))
            return d
        self.accepted.append((mail, blob))
        return defer.succeed(None)

    def quota_ok(self, addr, size):
        if str(addr) in self.full_mailboxes:
            return False
        if str(addr) == "flaky@example.com":
            raise RuntimeError("mailbox store unavailable")
        return True

    def redirect_of(self, addr):
        return self.redirects.get(str(addr))

    def message_bytes(self, index: int = -1) -> bytes:
        """The stored bytes of an accepted mail (inline or from its file)."""
        mail, ref = self.accepted[index]
        return mail.message_bytes()

    def leftover_files(self) -> list[Path]:
        """Blob files (temporary or final) that exist on disk."""
        return [p for p in self.blobs.root.rglob("*") if p.is_file()]


def smtp_config(**overrides) -> SMTPServerConfig:
    """An SMTPServerConfig for tests: fast timeouts, no failure delay."""
    values = dict(listen="tcp:0:interface=127.0.0.1", auth_failure_delay=0.0,
                  max_message_size=1_000_000, authorized_addresses=["192.0.2.0/24"])
    values.update(overrides)
    return SMTPServerConfig(**values)


def _tls_string_transport(**kw):
    from twisted.internet.testing import StringTransport

    class _T(StringTransport):
        tls_context = None

        def startTLS(self, ctx):
            self.tls_context = ctx

    return _T(**kw)


class FakeSession:
    """A protocol on a StringTransport, driven line by line, with a Clock for timeouts.

    ``send(b"...")`` feeds raw bytes and returns the reply lines written since the last
    call; ``cmd("NOOP")`` sends one line and returns its last reply line.
    """

    def __init__(self, tmp_path, peer: str = "203.0.113.5", tls_context=None,
                 backend=None, clock=None, **config):
        from twisted.internet.address import IPv4Address, IPv6Address
        from twisted.internet.task import Clock

        from mailet_mta.smtp.server import SMTPServerFactory

        self.backend = backend or RecordingBackend(Path(tmp_path) / "blobs")
        self.clock = clock or Clock()
        self.factory = SMTPServerFactory(smtp_config(**config), self.backend, tls_context)
        kind = IPv6Address if ":" in peer else IPv4Address
        host = "2001:db8::25" if ":" in peer else "198.51.100.25"
        self.peer = kind("TCP", peer, 40000)
        self.transport = _tls_string_transport(peerAddress=self.peer,
                                               hostAddress=kind("TCP", host, 25))
        self.proto = self.factory.buildProtocol(self.peer)
        if hasattr(self.proto, "callLater"):
            self.proto.callLater = self.clock.callLater
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def take(self) -> list[str]:
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return [line for line in data.split("\r\n") if line]

    def send(self, data: bytes) -> list[str]:
        self.proto.dataReceived(data)
        self.clock.advance(0)           # the turns after COMMANDS_PER_TURN commands
        return self.take()

    def cmd(self, line: str) -> str:
        replies = self.send(line.encode("utf-8") + b"\r\n")
        return replies[-1] if replies else ""

    def codes(self, data: bytes) -> list[int]:
        """The codes of the final lines of the replies to ``data``."""
        return [int(r[:3]) for r in self.send(data) if r[3:4] == " "]

    def ehlo(self, name: str = "client.example.net") -> list[str]:
        return self.send(f"EHLO {name}\r\n".encode())

    def login(self, user="alice", password="secret") -> str:
        import base64
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    @property
    def disconnected(self) -> bool:
        return self.transport.disconnecting
