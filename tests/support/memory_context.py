"""An in-memory IMailetContext for unit tests of matchers and mailets.

Set up local domains, users and rewrite mappings; every service call (``send_mail``,
``store_in_repository``, ``bounce``, ``store_in_mailbox``, ``queue_remote``) is recorded
and answered with an already-fired Deferred. Log events are kept in ``events``.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.internet import defer
from twisted.logger import Logger, formatEvent
from zope.interface import implementer

from mailet_mta.api import IMailetContext, MailAddress, MailetConfig, MatcherConfig


@implementer(IMailetContext)
class MemoryContext:
    """A mailet context whose directory and outputs are plain Python collections."""

    def __init__(self, domains: Iterable[str] = ("example.com",),
                 users: Iterable[str] = (), postmaster: str = "postmaster@example.com",
                 server_name: str = "mail.example.com",
                 mappings: dict[str, list[str]] | None = None,
                 mx: dict[str, list[tuple[int, str]]] | None = None,
                 dns: dict[tuple[str, str], list] | None = None):
        self.domains = {MailAddress("x", d).domain for d in domains}
        self.users = {str(MailAddress.parse(u)) for u in users}
        self.postmaster = MailAddress.parse(postmaster)
        self.server_name = server_name
        self.mappings = {k: list(v) for k, v in (mappings or {}).items()}
        self.mx = dict(mx or {})
        self.dns = dict(dns or {})                             # (name, type) → records
        self.dns_queries: list[tuple[str, str]] = []
        self.attributes: dict[str, Any] = {}
        self.events: list[dict] = []
        self.log = Logger(namespace="mailet_mta.test", observer=self.events.append)
        self.sent: list[tuple[Any, str, float]] = []           # (mail, state, delay)
        self.stored: list[tuple[str, Any]] = []                # (repository, mail)
        self.bounced: list[tuple[Any, str, Any]] = []          # (mail, message, bouncer)
        self.mailboxes: list[tuple[str, Any, str]] = []        # (user, mail, folder)
        self.queued: list[tuple[Any, str, Any]] = []           # (mail, queue, options)

    # -- lookups ----------------------------------------------------------------------
    def is_local_server(self, domain) -> bool:
        try:
            return MailAddress("x", str(domain)).domain in self.domains
        except ValueError:
            return False

    def is_local_user(self, name) -> bool:
        name = str(name)
        if "@" in name:
            return name in self.users
        return any(u.split("@")[0] == name for u in self.users)

    def is_local_email(self, address) -> bool:
        return str(address) in self.users

    def local_users_of(self, address) -> list[str]:
        return [str(address)] if self.is_local_email(address) else []

    def lookup_mappings(self, address) -> list[str]:
        address = MailAddress.parse(str(address))
        for key in (str(address), f"*@{address.domain}", address.domain):
            if key in self.mappings:
                return list(self.mappings[key])
        return []

    def get_attribute(self, name):
        return self.attributes.get(name)

    def mx_hosts(self, domain):
        return defer.succeed(self.mx.get(domain, [(0, domain)]))

    def dns_lookup(self, name, rrtype="TXT"):
        """Answers from ``dns`` ({(name, type): records}); a missing entry is []."""
        key = (str(name).lower().rstrip("."), rrtype)
        self.dns_queries.append(key)
        return defer.succeed(list(self.dns.get(key, [])))

    def run_in_worker(self, fn, *args, **kwargs):
        """Runs ``fn`` at once, on the calling thread (tests need no reactor)."""
        self.worker_calls = getattr(self, "worker_calls", 0) + 1
        return defer.maybeDeferred(fn, *args, **kwargs)

    # -- services (recorded) ----------------------------------------------------------
    def send_mail(self, mail, state="root", delay=0):
        mail.state = state
        self.sent.append((mail, state, delay))
        return defer.succeed(None)

    def bounce(self, mail, message, bouncer=None):
        self.bounced.append((mail, message, bouncer))
        return defer.succeed(None)

    def store_in_mailbox(self, user, mail, folder="INBOX"):
        self.mailboxes.append((user, mail, folder))
        return defer.succeed(None)

    def store_in_repository(self, repository, mail):
        self.stored.append((repository, mail.duplicate(name=mail.name)))
        return defer.succeed(None)

    def queue_remote(self, mail, queue="outgoing", options=None):
        self.queued.append((mail, queue, options))
        return defer.succeed(None)

    # -- helpers for tests ------------------------------------------------------------
    def log_text(self) -> str:
        """Every logged event, formatted, one per line."""
        return "\n".join(formatEvent(e) for e in self.events)

    def mailet(self, cls, _processor: str = "root", **parameters):
        """An instance of the mailet class, initialised with ``parameters`` (which may
        include one named ``processor``: the mailet's own processor is ``_processor``)."""
        mailet = cls()
        mailet.init(MailetConfig(cls.__name__, self, parameters, _processor))
        return mailet

    def matcher(self, cls, condition: str | None = None, processor: str = "root"):
        """An instance of the matcher class, initialised with ``condition``."""
        matcher = cls()
        matcher.init(MatcherConfig(cls.__name__, condition, self, processor))
        return matcher


def run(result):
    """The outcome of ``match``/``service``: a plain value, a fired Deferred or a
    coroutine that finishes without waiting on the reactor. Raises what it raised."""
    if hasattr(result, "__await__") and not isinstance(result, defer.Deferred):
        result = defer.ensureDeferred(result)
    if isinstance(result, defer.Deferred):
        outcome = []
        result.addBoth(outcome.append)
        assert outcome, "the Deferred did not fire synchronously"
        value = outcome[0]
        if hasattr(value, "raiseException"):
            value.raiseException()
        return value
    return result
