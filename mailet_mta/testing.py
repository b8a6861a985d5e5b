"""The plugin test kit: run a matcher or mailet without a server.

James ships ``FakeMail``, ``FakeMailContext`` and ``FakeMailetConfig`` with its mailet
API; this module is the same for mailet-mta. It depends on :mod:`mailet_mta.api` only,
so a plugin's tests import nothing from the engine::

    from mailet_mta.testing import FakeMailContext, fake_mail, run

    def test_the_ticket_number_becomes_a_header():
        mailet = FakeMailContext().mailet(TagTicket, prefix="ACME")
        mail = fake_mail(subject="[ACME-42] printer")
        run(mailet.service(mail))
        assert mail.message["X-Ticket"] == "42"

:class:`FakeMailContext` answers the lookups of :class:`~mailet_mta.api.IMailetContext`
from plain collections (local domains, users, rewrite mappings, MX hosts) and records
every service call (``send_mail``, ``bounce``, ``store_in_mailbox``,
``store_in_repository``, ``queue_remote``) in a list, answered with an already-fired
Deferred. Log events are kept in ``events``. :func:`run` turns what ``match`` or
``service`` returned — a value, a fired Deferred or a coroutine — into its value, so
tests need no reactor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any, TypeVar, cast

from twisted.internet import defer
from twisted.logger import ILogObserver, Logger, formatEvent
from zope.interface import implementer

from mailet_mta.api import IMailetContext, Mail, MailAddress, MailetConfig, MatcherConfig

__all__ = ["FakeMailContext", "fake_mail", "run"]

T = TypeVar("T")


def fake_mail(message: bytes | EmailMessage | None = None, *,
              sender: str | None = "sender@example.org",
              recipients: Iterable[str] = ("recipient@example.com",),
              subject: str = "test", body: str = "Hello.\n",
              attributes: dict[str, Any] | None = None, **mail_fields: Any) -> Mail:
    """A :class:`~mailet_mta.api.Mail` for a test (James's ``FakeMail.builder()``).

    Without ``message`` it holds a plain text message built from ``sender``,
    ``recipients``, ``subject`` and ``body``. ``sender=None`` is the null sender
    ``<>``. Other keyword arguments (``state``, ``remote_addr``, ``auth_user``,
    ``helo``, ``name``…) go to the ``Mail`` as they are."""
    rcpts = [MailAddress.parse(r) for r in recipients]
    if message is None:
        built = EmailMessage(policy=SMTP)
        built["From"] = sender or "MAILER-DAEMON"
        built["To"] = ", ".join(str(r) for r in rcpts)
        built["Subject"] = subject
        built.set_content(body)
        message = built.as_bytes()
    return Mail(sender=MailAddress.parse(sender) if sender else None, recipients=rcpts,
                message=message, attributes=attributes, **mail_fields)


@implementer(IMailetContext)
class FakeMailContext:
    """A mailet context whose directory and outputs are plain Python collections.

    ``domains`` are the local mail domains, ``users`` the local mailboxes
    (``user@domain``), ``mappings`` the rewrite table (``{"a@example.com":
    ["b@example.com"]}``, keys may be ``*@domain`` or ``domain``), ``mx`` the MX answers
    (``{"example.org": [(10, "mx.example.org")]}``). What the mailets did is in
    ``sent``, ``bounced``, ``mailboxes``, ``stored`` and ``queued``."""

    def __init__(self, domains: Iterable[str] = ("example.com",),
                 users: Iterable[str] = (), postmaster: str = "postmaster@example.com",
                 server_name: str = "mail.example.com",
                 mappings: dict[str, list[str]] | None = None,
                 mx: dict[str, list[tuple[int, str]]] | None = None,
                 dns: dict[tuple[str, str], list[Any]] | None = None):
        self.domains = {MailAddress("x", d).domain for d in domains}
        self.users = {str(MailAddress.parse(u)) for u in users}
        self.postmaster = MailAddress.parse(postmaster)
        self.server_name = server_name
        self.mappings = {k: list(v) for k, v in (mappings or {}).items()}
        self.mx = dict(mx or {})
        self.dns = dict(dns or {})                             # (name, type) → records
        self.dns_queries: list[tuple[str, str]] = []
        self.attributes: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.log = Logger(namespace="mailet_mta.test",
                          observer=cast(ILogObserver, self.events.append))
        self.sent: list[tuple[Any, str, float]] = []           # (mail, state, delay)
        self.stored: list[tuple[str, Any]] = []                # (repository, mail)
        self.bounced: list[tuple[Any, str, Any]] = []          # (mail, message, bouncer)
        self.mailboxes: list[tuple[str, Any, str]] = []        # (user, mail, folder)
        self.queued: list[tuple[Any, str, Any]] = []           # (mail, queue, options)
        self.worker_calls = 0

    # -- lookups ----------------------------------------------------------------------
    def is_local_server(self, domain: object) -> bool:
        try:
            return MailAddress("x", str(domain)).domain in self.domains
        except ValueError:
            return False

    def is_local_user(self, name: object) -> bool:
        text = str(name)
        if "@" in text:
            return text in self.users
        return any(u.split("@")[0] == text for u in self.users)

    def is_local_email(self, address: object) -> bool:
        return str(address) in self.users

    def local_users_of(self, address: object) -> list[str]:
        return [str(address)] if self.is_local_email(address) else []

    def lookup_mappings(self, address: object) -> list[str]:
        parsed = MailAddress.parse(str(address))
        for key in (str(parsed), f"*@{parsed.domain}", parsed.domain):
            if key in self.mappings:
                return list(self.mappings[key])
        return []

    def get_attribute(self, name: str) -> Any:
        return self.attributes.get(name)

    def mx_hosts(self, domain: str) -> defer.Deferred[list[tuple[int, str]]]:
        return defer.succeed(self.mx.get(domain, [(0, domain)]))

    def dns_lookup(self, name: str, rrtype: str = "TXT") -> defer.Deferred[list[Any]]:
        """Answers from ``dns`` ({(name, type): records}); a missing entry is []."""
        key = (str(name).lower().rstrip("."), rrtype)
        self.dns_queries.append(key)
        return defer.succeed(list(self.dns.get(key, [])))

    def run_in_worker(self, fn: Callable[..., T], *args: Any,
                      **kwargs: Any) -> defer.Deferred[T]:
        """Runs ``fn`` at once, on the calling thread (tests need no reactor); counts
        the calls in ``worker_calls``."""
        self.worker_calls += 1
        return defer.maybeDeferred(fn, *args, **kwargs)

    # -- services (recorded) ----------------------------------------------------------
    def send_mail(self, mail: Mail, state: str = "root",
                  delay: float = 0) -> defer.Deferred[None]:
        mail.state = state
        self.sent.append((mail, state, delay))
        return defer.succeed(None)

    def bounce(self, mail: Mail, message: str, bouncer: Any = None) -> defer.Deferred[None]:
        self.bounced.append((mail, message, bouncer))
        return defer.succeed(None)

    def store_in_mailbox(self, user: str, mail: Mail, folder: str = "INBOX",
                         prefix_headers: Iterable[tuple[str, str]] = ()) -> defer.Deferred[None]:
        self.mailboxes.append((user, mail, folder))
        return defer.succeed(None)

    def store_in_repository(self, repository: str, mail: Mail) -> defer.Deferred[None]:
        self.stored.append((repository, mail.duplicate(name=mail.name)))
        return defer.succeed(None)

    def queue_remote(self, mail: Mail, queue: str = "outgoing",
                     options: Any = None) -> defer.Deferred[None]:
        self.queued.append((mail, queue, options))
        return defer.succeed(None)

    # -- building and reading ---------------------------------------------------------
    def log_text(self) -> str:
        """Every logged event, formatted, one per line."""
        return "\n".join(formatEvent(e) for e in self.events)

    def mailet(self, cls: Callable[[], T], _processor: str = "root", **parameters: Any) -> T:
        """An instance of the mailet class, initialised with ``parameters`` (which may
        include one named ``processor``: the mailet's own processor is ``_processor``)."""
        mailet = cls()
        name = getattr(cls, "__name__", "mailet")
        mailet.init(MailetConfig(name, self, parameters, _processor))  # type: ignore[attr-defined]
        return mailet

    def matcher(self, cls: Callable[[], T], condition: str | None = None,
                processor: str = "root") -> T:
        """An instance of the matcher class, initialised with ``condition``."""
        matcher = cls()
        name = getattr(cls, "__name__", "matcher")
        matcher.init(MatcherConfig(name, condition, self, processor))  # type: ignore[attr-defined]
        return matcher


def run(result: Any) -> Any:
    """The outcome of ``match``/``service``: a plain value, a fired Deferred or a
    coroutine that finishes without waiting on the reactor. Raises what it raised;
    fails the test when the Deferred has not fired (the mailet waits on something the
    fake context does not answer at once)."""
    if hasattr(result, "__await__") and not isinstance(result, defer.Deferred):
        result = defer.ensureDeferred(result)
    if isinstance(result, defer.Deferred):
        outcome: list[Any] = []
        result.addBoth(outcome.append)
        if not outcome:
            raise AssertionError("the Deferred did not fire synchronously")
        value = outcome[0]
        if hasattr(value, "raiseException"):
            value.raiseException()
        return value
    return result
