"""Where to deliver a domain's mail: MX lookup (RFC 5321 §5.1) on twisted.names.

``mx_hosts(domain)`` answers with ``(preference, host, port)`` in the order to try:
MX records by preference with equal preferences shuffled; the domain itself when it has
no MX but has an address; a static table (``DNSConfig.hosts``) before any DNS.
Failures are classified: :class:`DNSPermanentError` (NXDOMAIN, null MX — RFC 7505, no
mail host at all) bounces; :class:`DNSTemporaryError` (timeouts, SERVFAIL, refused)
is retried.
"""

from __future__ import annotations

import ipaddress
import random
import socket

from twisted.internet import defer
from twisted.names import client, dns, error, hosts, resolve
from twisted.python.failure import Failure

from ..config.model import DNSConfig

SMTP_PORT = 25


class DNSPermanentError(Exception):
    """The domain cannot receive mail: it does not exist, or says so (null MX)."""


class DNSTemporaryError(Exception):
    """The answer could not be had now (timeout, server failure): try again later."""


def split_host_port(text: str, default_port: int = SMTP_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default_port


def _ip_literal(host: str) -> str | None:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class Resolver:
    """MX and address lookups for remote delivery, with a static override table."""

    def __init__(self, config: DNSConfig | None = None, reactor=None, shuffle=random.shuffle):
        self.config = config or DNSConfig()
        self._shuffle = shuffle
        self.static = {d.lower().rstrip("."): [split_host_port(h) for h in entries]
                       for d, entries in (self.config.hosts or {}).items()}
        timeout = (float(self.config.timeout),)
        if self.config.servers:
            servers = [split_host_port(s, 53) for s in self.config.servers]
            dns_client = client.Resolver(servers=servers, timeout=timeout, reactor=reactor)
        else:
            dns_client = client.Resolver(resolv="/etc/resolv.conf", timeout=timeout,
                                         reactor=reactor)
        self.client = dns_client
        self._resolver = resolve.ResolverChain([hosts.Resolver(), dns_client])

    # -- MX -------------------------------------------------------------------------
    @defer.inlineCallbacks
    def mx_hosts(self, domain: str):
        """Deferred → [(preference, host, port)] in the order to try them."""
        domain = domain.lower().rstrip(".")
        if domain in self.static:
            return [(i, h, p) for i, (h, p) in enumerate(self.static[domain])]
        literal = _ip_literal(domain) if domain.startswith("[") else None
        if literal:
            return [(0, literal, SMTP_PORT)]
        try:
            answers, _auth, _add = yield self.client.lookupMailExchange(domain)
        except Exception as exc:  # noqa: BLE001 - classified below
            raise _classify(exc, domain, "MX") from None
        records = [(rr.payload.preference, str(rr.payload.name).rstrip("."))
                   for rr in answers if rr.type == dns.MX]
        if any(name == "" for _pref, name in records):
            if len(records) == 1:
                raise DNSPermanentError(f"{domain} does not accept mail (null MX, RFC 7505)")
            records = [r for r in records if r[1] != ""]
        if not records:
            # RFC 5321 §5.1: no MX → the domain itself is the implicit MX.
            addresses = yield self.lookup(domain)
            if not addresses:
                raise DNSPermanentError(f"{domain} has no MX and no address records")
            return [(0, domain, SMTP_PORT)]
        return [(pref, host, SMTP_PORT) for pref, host in self._order(records)]

    def _order(self, records):
        by_pref: dict[int, list[str]] = {}
        for pref, host in records:
            if host not in by_pref.setdefault(pref, []):
                by_pref[pref].append(host)
        out = []
        for pref in sorted(by_pref):
            group = list(by_pref[pref])
            self._shuffle(group)
            out.extend((pref, host) for host in group)
        return out

    # -- addresses ------------------------------------------------------------------------
    @defer.inlineCallbacks
    def lookup(self, host: str):
        """Deferred → the IPv4 then IPv6 addresses of ``host`` (an IP literal as is)."""
        literal = _ip_literal(host)
        if literal:
            return [literal]
        results = yield defer.DeferredList(
            [self._resolver.lookupAddress(host), self._resolver.lookupIPV6Address(host)],
            consumeErrors=True)
        addresses: list[str] = []
        failures: list[Failure] = []
        for ok, value in results:
            if not ok:
                failures.append(value)
                continue
            for rr in value[0]:
                if rr.type == dns.A:
                    addresses.append(rr.payload.dottedQuad())
                elif rr.type == dns.AAAA:
                    addresses.append(socket.inet_ntop(socket.AF_INET6, rr.payload.address))
        if addresses:
            return list(dict.fromkeys(addresses))
        temporary = [f for f in failures if not f.check(error.DNSNameError)]
        if temporary:
            raise _classify(temporary[0].value, host, "A/AAAA")
        if failures:
            raise DNSPermanentError(f"{host}: no such domain (NXDOMAIN)")
        return []

    # -- any record ---------------------------------------------------------------------
    @defer.inlineCallbacks
    def records(self, name: str, rrtype: str = "TXT"):
        """Deferred → the ``rrtype`` records of ``name`` (TXT, A, AAAA, MX or PTR).

        TXT records come as bytes (the strings of one record joined, RFC 7208 §3.3),
        A/AAAA as address text, MX as ``(preference, host)``, PTR as a host name. A name
        that does not exist or has no such record answers ``[]``; CNAMEs are followed by
        the resolver. Timeouts and server failures fail with :class:`DNSTemporaryError`.
        """
        rrtype = rrtype.upper()
        if rrtype not in _RECORD_TYPES:
            raise ValueError(f"record type {rrtype!r}: use one of {sorted(_RECORD_TYPES)}")
        name = name.rstrip(".")
        try:
            answers, _auth, _add = yield _lookup_by_type(self.client, name, rrtype)
        except error.DNSNameError:
            return []
        except Exception as exc:  # noqa: BLE001 - classified below
            raise _classify(exc, name, rrtype) from None
        wanted = _RECORD_TYPES[rrtype]
        return [_record_value(rr) for rr in answers if rr.type == wanted]


def _lookup_by_type(client, name, rrtype):
    lookups = {"TXT": client.lookupText, "A": client.lookupAddress,
               "AAAA": client.lookupIPV6Address, "MX": client.lookupMailExchange,
               "PTR": client.lookupPointer}
    return lookups[rrtype](name)


_RECORD_TYPES = {"TXT": dns.TXT, "A": dns.A, "AAAA": dns.AAAA, "MX": dns.MX, "PTR": dns.PTR}


def _record_value(rr):
    """One answer record as the plain value ``records`` promises for its type."""
    payload = rr.payload
    if rr.type == dns.TXT:
        return b"".join(payload.data)
    if rr.type == dns.A:
        return payload.dottedQuad()
    if rr.type == dns.AAAA:
        return socket.inet_ntop(socket.AF_INET6, payload.address)
    if rr.type == dns.MX:
        return (payload.preference, str(payload.name).rstrip("."))
    return str(payload.name).rstrip(".")


def _classify(exc: BaseException, name: str, kind: str) -> Exception:
    if isinstance(exc, error.DNSNameError):
        return DNSPermanentError(f"{name}: no such domain (NXDOMAIN)")
    if isinstance(exc, (DNSPermanentError, DNSTemporaryError)):
        return exc
    if isinstance(exc, (error.DNSQueryTimeoutError, defer.TimeoutError)):
        return DNSTemporaryError(f"{name}: {kind} lookup timed out")
    return DNSTemporaryError(f"{name}: {kind} lookup failed: {type(exc).__name__} {exc}")
