"""MTA-STS (RFC 8461): a destination's published policy of verified TLS to listed MXs.

``MTASTS.policy_for(domain)`` looks up ``_mta-sts.<domain>`` TXT; when it names a
policy id that the database does not hold unexpired, the policy is fetched from
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (verified TLS, no redirects, at
most 64 KiB, within ``tlsPolicy.fetchTimeout``), parsed and stored for every process
until ``max_age`` runs out. A failed lookup or fetch keeps using an unexpired cached
policy (§5.1), so an attacker who blocks the TXT record or the HTTPS host cannot
downgrade a destination we already know.

The policy format is a few ``key: value`` lines (§3.2); the TXT record is a tag list
parsed by dkimpy's tag-value parser (as DMARC's). There is no maintained Python
library for MTA-STS on Twisted (postfix-mta-sts-resolver is an asyncio daemon), so the
small parser is ours; every limit is checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from twisted.internet import defer, protocol, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from ..storage.schema import mta_sts_policies
from .resolver import DNSPermanentError, DNSTemporaryError

log = Logger(namespace="mailet_mta.delivery.mta_sts")

MAX_POLICY_SIZE = 64 * 1024       # §3.3: senders may limit the body; 64 KiB is ample
MAX_MX_PATTERNS = 100
MAX_AGE_LIMIT = 31557600          # §3.2: max_age is at most one year
MODES = ("enforce", "testing", "none")
WELL_KNOWN = "/.well-known/mta-sts.txt"


class PolicyError(Exception):
    """A policy that could not be had or is not valid: the message says why."""

    def __init__(self, message: str, result_type: str = "sts-policy-invalid"):
        super().__init__(message)
        self.result_type = result_type          # the TLS-RPT result type (RFC 8460 §4.3)


@dataclass(frozen=True)
class STSPolicy:
    """A destination's policy: ``mode``, the ``mx`` patterns, and when it expires."""

    domain: str
    policy_id: str
    mode: str
    mx: tuple[str, ...]
    max_age: int
    fetched_at: float = 0.0

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.max_age

    def allows(self, host: str) -> bool:
        """True when the MX ``host`` matches one of the policy's ``mx`` patterns."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: an exact name, or ``*.example.com`` for exactly one more leftmost label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return pattern == host


def parse_policy(domain: str, policy_id: str, text: str, now: float) -> STSPolicy:
    """The policy in the body ``text`` (§3.2); PolicyError when it is not valid."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"MTA-STS policy of {domain}: line {line[:60]!r} is not "
                              f"key: value")
        key, value = key.strip().lower(), value.strip()
        if key == "mx":
            if len(mx) >= MAX_MX_PATTERNS:
                raise PolicyError(f"MTA-STS policy of {domain}: more than "
                                  f"{MAX_MX_PATTERNS} mx lines")
            mx.append(value.lower())
        else:
            fields.setdefault(key, value)      # §3.2: the first of a repeated field
    if fields.get("version") != "STSv1":
        raise PolicyError(f"MTA-STS policy of {domain}: version is not STSv1")
    mode = fields.get("mode", "").lower()
    if mode not in MODES:
        raise PolicyError(f"MTA-STS policy of {domain}: mode {mode!r} is not one of "
                          f"{', '.join(MODES)}")
    age = fields.get("max_age", "")
    if not age.isdigit() or len(age) > 10:
        raise PolicyError(f"MTA-STS policy of {domain}: max_age {age!r} is not a number")
    if mode != "none" and not mx:
        raise PolicyError(f"MTA-STS policy of {domain}: mode {mode} without mx lines")
    return STSPolicy(domain, policy_id, mode, tuple(mx), min(int(age), MAX_AGE_LIMIT), now)


def record_id(records: list[bytes]) -> str | None:
    """The ``id`` of the one ``v=STSv1`` TXT record (§3.1), or None (no policy)."""
    found = [r for r in records if r.split(b";", 1)[0].strip() == b"v=STSv1"]
    if len(found) != 1:                  # §3.1: none, or several, is no policy
        return None
    from dkim.util import parse_tag_value  # dkimpy and dnspython: when a record is read

    try:
        tags = parse_tag_value(found[0])
    except Exception:  # noqa: BLE001 - dkimpy's tag-list errors: no usable record
        return None
    value = tags.get(b"id", b"").decode("ascii", "replace").strip()
    return value if value and len(value) <= 32 and value.isalnum() else None


# -- fetching ----------------------------------------------------------------------------
class _BoundedBody(protocol.Protocol):
    """Collects a response body of at most ``limit`` octets."""

    def __init__(self, limit: int, done: defer.Deferred[bytes]):
        self.limit, self.done = limit, done
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            if not self.done.called:
                self.done.errback(PolicyError(f"policy larger than {self.limit} octets",
                                              "sts-policy-invalid"))
            if self.transport is not None:
                self.transport.stopProducing()
            return
        self.parts.append(data)

    def connectionLost(self, reason=None) -> None:
        if not self.done.called:
            self.done.callback(b"".join(self.parts))


@implementer(IAgentEndpointFactory)
class _PinnedEndpoints:
    """Connects the Agent to an address we resolved, with TLS verified for the URI's
    host name: the policy host goes through the delivery resolver (and its
    ``dns.hosts`` table), not the system's."""

    def __init__(self, reactor, ip: str, port: int, trust_root, timeout: float):
        self.reactor, self.ip, self.port = reactor, ip, port
        self.trust_root, self.timeout = trust_root, timeout

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii")
        tcp = (TCP6ClientEndpoint if ":" in self.ip else TCP4ClientEndpoint)(
            self.reactor, self.ip, self.port, timeout=self.timeout)
        options = ssl.optionsForClientTLS(host, trustRoot=self.trust_root)
        return wrapClientTLS(options, tcp)


class PolicyFetcher:
    """Fetches ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (§3.3)."""

    def __init__(self, reactor, resolver, trust_root=None, timeout: float = 30.0,
                 limit: int = MAX_POLICY_SIZE):
        self.reactor, self.resolver = reactor, resolver
        self.trust_root, self.timeout, self.limit = trust_root, timeout, limit

    async def fetch(self, domain: str) -> str:
        """The policy body as text; PolicyError(sts-policy-fetch-error) otherwise."""
        host = f"mta-sts.{domain}"
        d = defer.ensureDeferred(self._fetch(host))
        timer = self.reactor.callLater(self.timeout, d.cancel)
        try:
            return await d
        except Exception as exc:
            if not timer.active():
                raise PolicyError(f"fetching https://{host}{WELL_KNOWN} took more than "
                                  f"{self.timeout:g} s", "sts-policy-fetch-error") from None
            if isinstance(exc, PolicyError):
                raise
            text = str(exc) or type(exc).__name__
            kind = ("sts-webpki-invalid" if "certificate" in text.lower() or
                    "verif" in text.lower() else "sts-policy-fetch-error")
            raise PolicyError(f"fetching https://{host}{WELL_KNOWN}: {text}", kind) from None
        finally:
            if timer.active():
                timer.cancel()

    async def _fetch(self, host: str) -> str:
        ip, port = await self._address(host)
        agent = Agent.usingEndpointFactory(
            self.reactor, _PinnedEndpoints(self.reactor, ip, port, self.trust_root,
                                           self.timeout))
        response = await agent.request(b"GET", f"https://{host}{WELL_KNOWN}".encode(),
                                       Headers({b"User-Agent": [b"mailet-mta"]}))
        if response.code != 200:          # §3.3: redirects are not followed either
            response.deliverBody(_BoundedBody(0, defer.Deferred()))
            raise PolicyError(f"https://{host}{WELL_KNOWN} answered HTTP {response.code}",
                              "sts-policy-fetch-error")
        kind = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        if kind.split(b";")[0].strip().lower() != b"text/plain":
            raise PolicyError(f"https://{host}{WELL_KNOWN} is {kind.decode('latin-1')!r}, "
                              f"not text/plain", "sts-policy-invalid")
        done: defer.Deferred[bytes] = defer.Deferred()
        response.deliverBody(_BoundedBody(self.limit, done))
        body = await done
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError(f"https://{host}{WELL_KNOWN} is not UTF-8 text") from None

    async def _address(self, host: str) -> tuple[str, int]:
        static = self.resolver.static.get(host)
        if static:
            return static[0]
        try:
            addresses = await self.resolver.lookup(host)
        except (DNSPermanentError, DNSTemporaryError) as exc:
            raise PolicyError(str(exc), "sts-policy-fetch-error") from None
        if not addresses:
            raise PolicyError(f"{host} has no address", "sts-policy-fetch-error")
        return addresses[0], 443


# -- the cache -------------------------------------------------------------------------------
def _load(conn, domain: str) -> STSPolicy | None:
    row = conn.execute(select(mta_sts_policies).where(
        mta_sts_policies.c.domain == domain)).first()
    if row is None:
        return None
    return STSPolicy(row.domain, row.policy_id, row.mode,
                     tuple(p for p in row.mx.split("\n") if p), row.max_age, row.fetched_at)


def _store(conn, policy: STSPolicy) -> None:
    conn.execute(delete(mta_sts_policies).where(mta_sts_policies.c.domain == policy.domain))
    conn.execute(insert(mta_sts_policies).values(
        domain=policy.domain, policy_id=policy.policy_id, mode=policy.mode,
        mx="\n".join(policy.mx), max_age=policy.max_age, fetched_at=policy.fetched_at,
        expires_at=policy.expires_at))


class MTASTS:
    """The policies of destinations: DNS, then the database cache, then HTTPS."""

    def __init__(self, db, resolver, fetcher: PolicyFetcher, clock=None):
        self.db, self.resolver, self.fetcher = db, resolver, fetcher
        self.clock = clock
        self.fetches = 0
        # One lookup per domain at a time: the workers of one destination share it.
        self._inflight: dict[str, list[defer.Deferred[STSPolicy | None]]] = {}

    def _now(self) -> float:
        return self.clock.seconds() if self.clock is not None else time.time()

    async def policy_for(self, domain: str) -> STSPolicy | None:
        """The policy to apply to ``domain`` now, or None. Raises PolicyError only when
        the domain announces a policy that cannot be had and none is cached (then
        the mail goes as without MTA-STS, §5: the failure is only reported)."""
        domain = domain.lower().rstrip(".")
        waiter: defer.Deferred[STSPolicy | None] = defer.Deferred()
        waiters = self._inflight.get(domain)
        if waiters is not None:
            waiters.append(waiter)
        else:
            self._inflight[domain] = [waiter]
            defer.ensureDeferred(self._policy_for(domain)).addBoth(self._fan_out, domain)
        return await waiter

    def _fan_out(self, result, domain: str) -> None:
        """Give one lookup's outcome to everyone who waited for it."""
        for waiter in self._inflight.pop(domain, []):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _policy_for(self, domain: str) -> STSPolicy | None:
        now = self._now()
        cached = await self.db.read(_load, domain)
        if cached is not None and cached.expires_at <= now:
            cached = None
        try:
            current = record_id(await self.resolver.records(f"_mta-sts.{domain}", "TXT"))
        except DNSTemporaryError:
            return cached                 # §5.1: keep using a valid cached policy
        if current is None:
            return cached                 # §5.1: no record, yet the cache still holds
        if cached is not None and cached.policy_id == current:
            return cached
        self.fetches += 1
        try:
            body = await self.fetcher.fetch(domain)
            policy = parse_policy(domain, current, body, now)
        except PolicyError:
            if cached is not None:
                return cached
            raise
        await self.db.write(_store, policy)
        log.info("MTA-STS policy of {domain}: mode {mode}, mx {mx}, max_age {age}",
                 domain=domain, mode=policy.mode, mx=" ".join(policy.mx), age=policy.max_age)
        return policy

