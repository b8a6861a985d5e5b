"""The in-memory directory: the one answer to "is this local?".

The SMTP RCPT check, the matchers (``HostIsLocal``, ``RecipientIsLocal``), the
mailets (``PostmasterAlias``, ``LocalDelivery``) and the mailet context all ask this
object, so the listener and the pipeline never disagree about what is local:

- a *local domain* is a ``servernames`` entry, a row of the ``domains`` table, or an
  IP address literal of this host (``[192.0.2.1]``, ``[IPv6:::1]``); an address at
  an own literal means the same user at the first servername;
- a *local email* (accepted at RCPT, matched by ``RecipientIsLocal``) is a user, or an
  address the recipient rewrite table turns into at least one deliverable address (a
  user here, or a remote address: a forward), or ``postmaster@<local domain>`` when
  the configured postmaster is deliverable;
- the rewrite table is one table: the ``mapping`` parameters of the configured
  ``RecipientRewriteTable`` mailets first, then the ``mappings`` database table;
  before both, an SRS address at the domain of the configured ``SRS`` mailet maps to
  the address it reverses to, or to a ``550 5.7.1`` refusal when forged or expired.

Answers come from memory, never from a query on the reactor thread. The directory
loads the ``domains``, ``users`` and ``mappings`` tables at start and reloads them (off
the reactor) whenever the generation stamp in ``meta`` changes — every CLI change bumps
it — checked once a second.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from sqlalchemy import func, select
from twisted.internet import defer, task
from twisted.logger import Logger

from mailets import sender_rewriting
from mailets.rewrite_mappings import (
    ErrorMapping,
    MappingError,
    lookup_in,
    parse_mapping_entries,
    resolve_now,
)

from .address import MailAddress, MailAddressError
from .storage import schema
from .storage.db import Database

log = Logger(namespace="mailet_mta.directory")


def load_tables(conn) -> dict:
    """Read domains, users (lower-cased) with their quotas, and mappings."""
    domains = {r[0].lower() for r in conn.execute(select(schema.domains.c.name))}
    users, quotas = set(), {}
    for name, quota in conn.execute(select(schema.users.c.name, schema.users.c.quota)):
        users.add(name.lower())
        if quota is not None:
            quotas[name.lower()] = quota
    mappings: dict[str, list[str]] = {}
    for source, target in conn.execute(select(schema.mappings.c.source,
                                              schema.mappings.c.target)
                                       .order_by(schema.mappings.c.id)):
        mappings.setdefault(source.lower(), []).append(target)
    return {"domains": domains, "users": users, "quotas": quotas, "mappings": mappings,
            "generation": Database.generation(conn)}


MAX_LITERAL_CACHE = 1024


def is_own_ip(ip: str) -> bool:
    """True when ``ip`` is an address of this host: one a socket can bind to (the
    kernel knows its own addresses; nothing is sent). Unspecified and multicast
    addresses are never own addresses."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.is_unspecified or addr.is_multicast:
        return False
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((str(addr), 0))
    except OSError as exc:
        if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL):
            log.warn("cannot tell whether {ip} is an own address: {error}", ip=ip,
                     error=str(exc))
        return False
    return True


def literal_ip(domain: str) -> str | None:
    """``[192.0.2.1]`` → ``192.0.2.1``, ``[IPv6:::1]`` → ``::1``; None otherwise."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    return inner[5:] if inner.lower().startswith("ipv6:") else inner


def configured_mappings(spoolmanager) -> dict[str, list[str]]:
    """The ``mapping``/``mappings`` parameters of every RecipientRewriteTable mailet
    of the spool manager configuration, as one table (the first source wins)."""
    table: dict[str, list[str]] = {}
    for processor in spoolmanager.processors.values():
        for spec in processor.mailets:
            if spec.mailet.rpartition(".")[2] != "RecipientRewriteTable":
                continue
            values = [v for k, v in spec.parameters.items() if k in ("mapping", "mappings")]
            try:
                parsed = parse_mapping_entries(values)
            except ValueError:
                continue                  # the mailet's own init reports it
            for source, targets in parsed.items():
                table.setdefault(source, targets)
    return table


def load_usage(conn) -> dict[str, int]:
    """Octets stored for every user that has a quota (one grouped query)."""
    users, boxes, msgs = schema.users, schema.mailboxes, schema.messages
    query = (select(boxes.c.user, func.coalesce(func.sum(msgs.c.size), 0))
             .select_from(msgs.join(boxes, msgs.c.mailbox_id == boxes.c.id)
                          .join(users, users.c.name == boxes.c.user))
             .where(users.c.quota.is_not(None)).group_by(boxes.c.user))
    return {user: int(total) for user, total in conn.execute(query)}


def usage_of(conn, users) -> dict[str, int]:
    """Octets stored now for each of ``users`` (exact, for the end-of-DATA check)."""
    from .storage.mailboxes import quota_usage

    return {user: quota_usage(conn, user) for user in users}


class Directory:
    """Answers local-domain/user/mapping/quota questions from memory."""

    def __init__(self, db: Database | None, servernames, postmaster: str,
                 configured: dict[str, list[str]] | None = None,
                 srs: sender_rewriting.SenderRewriting | None = None):
        self.db = db
        self.servernames = {d.lower().rstrip(".") for d in servernames}
        self.primary = next(iter(servernames), "localhost").lower().rstrip(".")
        self.postmaster = MailAddress.parse(postmaster)
        self.configured: dict[str, list[str]] = dict(configured or {})
        self.srs = srs
        self.domains: set[str] = set()
        self.users: set[str] = set()
        self.quotas: dict[str, int] = {}
        self.mappings: dict[str, list[str]] = {}
        self.usage: dict[str, int] = {}      # octets stored, for users with a quota
        self.generation = None
        self._own_literals: dict[str, bool] = {}
        self._loop: task.LoopingCall | None = None

    def reconfigure(self, new_config) -> None:
        """Take the servernames, postmaster, configured mappings (the
        ``RecipientRewriteTable`` parameters of the processors) and SRS settings (the
        ``SRS`` mailet's) of a reloaded configuration."""
        self.servernames = {d.lower().rstrip(".") for d in new_config.servernames}
        self.primary = new_config.server_name.lower().rstrip(".")
        self.postmaster = MailAddress.parse(new_config.postmaster_address)
        self.configured = dict(configured_mappings(new_config.spoolmanager))
        self.srs = sender_rewriting.configured(new_config.spoolmanager,
                                               new_config.server_name)
        self.warn_if_no_postmaster()

    # -- loading ------------------------------------------------------------------------
    def apply(self, tables: dict) -> None:
        self.domains = set(tables["domains"])
        self.users = set(tables["users"])
        self.quotas = dict(tables["quotas"])
        self.mappings = dict(tables["mappings"])
        self.generation = tables["generation"]
        if "usage" in tables:
            self.usage = dict(tables["usage"])

    def load_sync(self) -> None:
        with self.db.engine.connect() as conn:
            self.apply({**load_tables(conn), "usage": load_usage(conn)})
        self.warn_if_no_postmaster()

    def start(self, interval: float = 1.0, clock=None) -> None:
        self._loop = task.LoopingCall(self.refresh)
        if clock is not None:
            self._loop.clock = clock
        self._loop.start(interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    @defer.inlineCallbacks
    def refresh(self):
        """Reload when the generation stamp changed, and the mailbox usage of users
        with a quota every time (queries run off the reactor thread)."""
        try:
            generation = yield self.db.read(Database.generation)
            if generation != self.generation:
                tables = yield self.db.read(load_tables)
                self.apply(tables)
                log.info("directory reloaded: {d} domains, {u} users, {m} mappings",
                         d=len(self.domains | self.servernames), u=len(self.users),
                         m=len(self.mappings))
                self.warn_if_no_postmaster()
            if self.quotas:
                self.usage = yield self.db.read(load_usage)
        except Exception:  # noqa: BLE001 - keep the old directory
            log.failure("directory reload failed")

    # -- domains ------------------------------------------------------------------------
    def is_local_domain(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".") if domain else ""
        if domain in self.servernames or domain in self.domains:
            return True
        return self.is_own_literal(domain)

    def is_own_literal(self, domain: str) -> bool:
        """True for an address literal of this host (cached, bounded)."""
        ip = literal_ip(domain)
        if ip is None:
            return False
        known = self._own_literals.get(ip)
        if known is None:
            if len(self._own_literals) >= MAX_LITERAL_CACHE:
                self._own_literals.clear()
            known = self._own_literals[ip] = is_own_ip(ip)
        return known

    def canonical(self, address) -> MailAddress | None:
        """The address as the directory keys it: at an own IP literal it is the same
        user at the first servername."""
        addr = self._address(address)
        if addr is not None and addr.is_ip_literal and addr.domain not in self.domains \
                and addr.domain not in self.servernames and self.is_own_literal(addr.domain):
            return MailAddress(addr.local_part, self.primary)
        return addr

    # -- users and mappings -------------------------------------------------------------
    def is_local_user(self, name: str) -> bool:
        return name.lower() in self.users

    def _address(self, address) -> MailAddress | None:
        if isinstance(address, MailAddress):
            return address
        try:
            return MailAddress.parse(str(address))
        except MailAddressError:
            return None

    def _is_postmaster(self, addr: MailAddress) -> bool:
        return addr.user.lower() == "postmaster" and self.is_local_domain(addr.domain)

    def local_users_of(self, address) -> list[str]:
        """The user whose mailbox ``address`` is (postmaster@<local domain> without a
        mailbox of its own: the configured postmaster's, when that is a user)."""
        addr = self.canonical(address)
        if addr is None or not self.is_local_domain(addr.domain):
            return []
        key = f"{addr.user}@{addr.domain}".lower()
        if key in self.users:
            return [key]
        if self._is_postmaster(addr):
            pm = f"{self.postmaster.user}@{self.postmaster.domain}".lower()
            if pm in self.users:
                return [pm]
        return []

    def lookup_mappings(self, address) -> list[str]:
        """Targets for the exact address, else ``*@domain``, else the bare domain:
        configured mappings first, then the database table."""
        addr = self.canonical(address)
        if addr is None:
            return []
        if self.srs is not None and self.srs.is_srs(addr):
            return self.srs.mapping(addr)
        return lookup_in(self.configured, addr) or lookup_in(self.mappings, addr)

    def resolve(self, address) -> list[MailAddress]:
        """The final addresses of ``address`` after the rewrite table (itself when no
        mapping applies); MappingError for an ``error:`` mapping or a loop."""
        addr = self.canonical(address)
        if addr is None:
            raise MappingError(f"550 5.1.3 <{address}>: bad address")
        return resolve_now(addr, self.lookup_mappings)

    def deliverable(self, address) -> bool:
        """A user here, or an address of another domain (relayed)."""
        addr = self.canonical(address)
        return addr is not None and (bool(self.local_users_of(addr))
                                     or not self.is_local_domain(addr.domain))

    def is_local_email(self, address) -> bool:
        """An address of a local domain that this server takes mail for: a user, an
        alias with at least one deliverable target, or a postmaster."""
        addr = self.canonical(address)
        if addr is None or not self.is_local_domain(addr.domain):
            return False
        if self.local_users_of(addr):
            return True
        try:
            targets = self.resolve(addr)
        except MappingError:
            return False
        if targets != [addr]:
            return any(self.deliverable(t) for t in targets)
        return self._is_postmaster(addr) and addr != self.postmaster \
            and self.is_local_email(self.postmaster)

    def refusal_of(self, address) -> tuple[int, str, str] | None:
        """The reply an ``error:`` mapping gives ``address`` (its own code and text),
        or None: other refusals stay a plain "user unknown" (they name internal
        addresses)."""
        try:
            self.resolve(address)
        except ErrorMapping as exc:
            return exc.reply()
        except MappingError:
            return None
        return None

    def postmaster_problem(self) -> str | None:
        """Why mail to the postmaster cannot be delivered, or None when it can."""
        pm = self.postmaster
        if not self.is_local_domain(pm.domain) or self.is_local_email(pm):
            return None
        return (f"the postmaster {pm} has no mailbox: mail to postmaster@<your domains> "
                f"cannot be delivered. Create it (mailet-mta users add {pm}) or make it "
                f"an alias of a user (mailet-mta aliases add {pm} USER@DOMAIN)")

    def warn_if_no_postmaster(self) -> None:
        problem = self.postmaster_problem()
        if problem:
            log.warn("{problem}", problem=problem)

    # -- quotas -------------------------------------------------------------------------
    def delivery_users(self, address) -> list[str]:
        """The users whose mailboxes mail to ``address`` ends in, after the rewrite
        table ([] for a remote or refused address)."""
        try:
            targets = self.resolve(address)
        except MappingError:
            return []
        users: list[str] = []
        for target in targets:
            users.extend(u for u in self.local_users_of(target) if u not in users)
        return users

    def over_quota(self, user: str, size: int, usage: int | None = None) -> bool:
        """Whether a message of ``size`` octets would pass ``user``'s quota (usage:
        the cached one unless given)."""
        quota = self.quotas.get(user)
        if quota is None:
            return False
        used = self.usage.get(user, 0) if usage is None else usage
        return used + max(size, 1) > quota

    def mailbox_full(self, address, size: int, usage: dict | None = None) -> bool:
        """True when every mailbox ``address`` delivers to is too full for ``size``
        octets (False for remote addresses and users without a quota)."""
        if not self.quotas:         # the common case costs no rewrite-table walk
            return False
        users = self.delivery_users(address)
        return bool(users) and all(
            self.over_quota(u, size, None if usage is None else usage.get(u, 0))
            for u in users)

    def identities_of(self, user: str) -> set[MailAddress]:
        """Addresses ``user`` may send as: itself and every alias mapping to it."""
        out: set[MailAddress] = set()
        me = self._address(user)
        if me is not None:
            out.add(me)
        lowered = user.lower()
        for table in (self.configured, self.mappings):
            for source, targets in table.items():
                if "@" in source and not source.startswith("*@") and any(
                        t.lower() == lowered for t in targets):
                    alias = self._address(source)
                    if alias is not None:
                        out.add(alias)
        return out
