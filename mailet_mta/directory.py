"""The in-memory directory: local domains, users and address mappings.

Matchers and the SMTP RCPT policy ask "is this domain local? is this a user?" for
every recipient, so the answers come from memory, never from a query on the reactor
thread. The directory loads the ``domains``, ``users`` and ``mappings`` tables at
start and reloads them (off the reactor) whenever the generation stamp in ``meta``
changes — every CLI change bumps it — checked once a second.
"""

from __future__ import annotations

from sqlalchemy import select
from twisted.internet import defer, task
from twisted.logger import Logger

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


class Directory:
    """Answers local-domain/user/mapping questions from memory."""

    def __init__(self, db: Database | None, servernames, postmaster: str):
        self.db = db
        self.servernames = {d.lower().rstrip(".") for d in servernames}
        self.postmaster = MailAddress.parse(postmaster)
        self.domains: set[str] = set()
        self.users: set[str] = set()
        self.quotas: dict[str, int] = {}
        self.mappings: dict[str, list[str]] = {}
        self.generation = None
        self._loop: task.LoopingCall | None = None

    # -- loading ------------------------------------------------------------------------
    def apply(self, tables: dict) -> None:
        self.domains = set(tables["domains"])
        self.users = set(tables["users"])
        self.quotas = dict(tables["quotas"])
        self.mappings = dict(tables["mappings"])
        self.generation = tables["generation"]

    def load_sync(self) -> None:
        with self.db.engine.connect() as conn:
            self.apply(load_tables(conn))

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
        """Reload when the generation stamp changed (runs off the reactor thread)."""
        try:
            generation = yield self.db.read(Database.generation)
            if generation != self.generation:
                tables = yield self.db.read(load_tables)
                self.apply(tables)
                log.info("directory reloaded: {d} domains, {u} users, {m} mappings",
                         d=len(self.domains | self.servernames), u=len(self.users),
                         m=len(self.mappings))
        except Exception:  # noqa: BLE001 - keep the old directory
            log.failure("directory reload failed")

    # -- questions ----------------------------------------------------------------------
    def is_local_domain(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".") if domain else ""
        return domain in self.servernames or domain in self.domains

    def is_local_user(self, name: str) -> bool:
        return name.lower() in self.users

    def _address(self, address) -> MailAddress | None:
        if isinstance(address, MailAddress):
            return address
        try:
            return MailAddress.parse(str(address))
        except MailAddressError:
            return None

    def local_users_of(self, address) -> list[str]:
        """Users whose mailbox ``address`` reaches: itself, or via simple alias mappings."""
        addr = self._address(address)
        if addr is None or not self.is_local_domain(addr.domain):
            return []
        key = f"{addr.user}@{addr.domain}".lower()
        if key in self.users:
            return [key]
        if addr.user.lower() == "postmaster":
            pm = f"{self.postmaster.user}@{self.postmaster.domain}".lower()
            if pm in self.users:
                return [pm]
        return []

    def is_local_email(self, address) -> bool:
        """A mailbox we store mail for (a user), or an address a mapping handles."""
        addr = self._address(address)
        if addr is None or not self.is_local_domain(addr.domain):
            return False
        if self.local_users_of(addr):
            return True
        return bool(self.lookup_mappings(addr))

    def lookup_mappings(self, address) -> list[str]:
        """Targets for the exact address, else ``*@domain``, else the bare domain."""
        addr = self._address(address)
        if addr is None:
            return []
        key = f"{addr.user}@{addr.domain}".lower()
        for source in (key, f"*@{addr.domain}", addr.domain):
            targets = self.mappings.get(source)
            if targets:
                return list(targets)
        return []

    def identities_of(self, user: str) -> set[MailAddress]:
        """Addresses ``user`` may send as: itself and every alias mapping to it."""
        out: set[MailAddress] = set()
        me = self._address(user)
        if me is not None:
            out.add(me)
        lowered = user.lower()
        for source, targets in self.mappings.items():
            if "@" in source and not source.startswith("*@") and any(
                    t.lower() == lowered for t in targets):
                alias = self._address(source)
                if alias is not None:
                    out.add(alias)
        return out
