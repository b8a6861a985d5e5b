"""DANE for SMTP (RFC 7672): TLSA records of an MX host decide how its certificate is
checked, when DNSSEC says the records are genuine.

We do not validate DNSSEC ourselves: the resolver in ``dns.servers`` must, and say so
with the AD bit (RFC 4035 §3.2.3, RFC 6840 §5.7) — a validating resolver on loopback,
as Postfix requires for ``smtp_dns_support_level = dnssec``. Queries are sent with AD
set (so the resolver reports it) through Twisted's DNS protocols (UDP, then TCP when
the answer is truncated); a TLSA answer without AD is treated as no TLSA at all.
TLSA record data is parsed by dnspython, certificates by ``cryptography`` and OpenSSL.

For one MX host (``tlsa_policy``):

- secure TLSA with usable records (DANE-TA 2 or DANE-EE 3, selector 0/1, matching
  type 0/1/2) → ``verify``: STARTTLS required, the certificate must match a record
  (DANE-EE: the end-entity certificate or its public key, no name check; DANE-TA: a
  certificate of the chain is the trust anchor, the chain verifies up to it and the
  end-entity certificate names the MX host); no fallback to plaintext.
- secure TLSA whose records are all unusable → ``encrypt``: STARTTLS required, the
  certificate not authenticated (RFC 7672 §2.2).
- secure denial or an insecure answer → no DANE for this host.
- a failed lookup (timeout, SERVFAIL) → the host is not used now (RFC 7672 §2.2.3).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import dns.exception as dnspython_exception
import dns.rdata as dnspython_rdata
import service_identity
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet import defer, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.names import dns
from zope.interface import implementer

from .resolver import DNSTemporaryError

TLSA = 52
DANE_TA, DANE_EE = 2, 3
MAX_TLSA_RECORDS = 32            # more in one RRset is not a real MX's


@dataclass(frozen=True)
class TLSARecord:
    """One TLSA record (RFC 6698 §2.1)."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        """RFC 7672 §3.1: only DANE-TA(2) and DANE-EE(3) with known selector and
        matching type are used for SMTP."""
        return self.usage in (DANE_TA, DANE_EE) and self.selector in (0, 1) and \
            self.mtype in (0, 1, 2)

    def matches(self, certificate: x509.Certificate) -> bool:
        """True when ``certificate`` (or its public key) is what this record names."""
        if self.selector == 0:
            data = certificate.public_bytes(serialization.Encoding.DER)
        else:
            data = certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if self.mtype == 1:
            data = hashlib.sha256(data).digest()
        elif self.mtype == 2:
            data = hashlib.sha512(data).digest()
        return data == self.data


@dataclass(frozen=True)
class DANEPolicy:
    """What DANE asks of one MX host: ``mode`` verify or encrypt."""

    host: str
    mode: str
    records: tuple[TLSARecord, ...] = ()


# -- DNS with the AD bit -----------------------------------------------------------------
class _ADDatagram(dns.DNSDatagramProtocol):
    """UDP DNS queries with the AD bit set (Twisted leaves it clear)."""

    def writeMessage(self, message, address):
        message.authenticData = 1
        super().writeMessage(message, address)


class _ADStream(dns.DNSProtocol):
    """TCP DNS queries with the AD bit set."""

    def writeMessage(self, message):
        message.authenticData = 1
        super().writeMessage(message)


class _Controller:
    """What Twisted's DNS protocols report to: nothing we need."""

    def messageReceived(self, message, protocol, address=None):
        pass

    def connectionMade(self, protocol):
        pass

    def connectionLost(self, protocol):
        pass


async def secure_query(reactor, server: tuple[str, int], name: str, rrtype: int,
                       timeout: float) -> tuple[bool, int, list[Any]]:
    """(AD bit, rCode, answer records of ``rrtype``) for ``name`` from ``server``;
    DNSTemporaryError on a timeout or an unreachable server."""
    query = [dns.Query(name, rrtype, dns.IN)]
    protocol = _ADDatagram(_Controller(), reactor=reactor)
    port = reactor.listenUDP(0, protocol, interface="::" if ":" in server[0] else "")
    try:
        message = await protocol.query(server, query, timeout)
    except (dns.DNSQueryTimeoutError, defer.TimeoutError):
        raise DNSTemporaryError(f"{name}: TLSA lookup timed out") from None
    except Exception as exc:  # noqa: BLE001 - refused, unreachable
        raise DNSTemporaryError(f"{name}: TLSA lookup failed: {exc}") from None
    finally:
        port.stopListening()
    if message.trunc:
        stream = _ADStream(_Controller(), reactor=reactor)
        endpoint = TCP4ClientEndpoint(reactor, server[0], server[1], timeout=timeout)
        try:
            await connectProtocol(endpoint, stream)
            message = await stream.query(query, timeout)
        except Exception as exc:  # noqa: BLE001 - every TCP failure is temporary
            raise DNSTemporaryError(f"{name}: TLSA lookup over TCP failed: {exc}") from None
        finally:
            if stream.transport is not None:
                stream.transport.loseConnection()
    return (bool(message.authenticData), message.rCode,
            [rr for rr in message.answers if rr.type == rrtype])


def _tlsa_record(payload) -> TLSARecord | None:
    """dnspython's reading of one TLSA record's wire data, or None when broken."""
    data = payload.data
    try:
        rdata = dnspython_rdata.from_wire("IN", "TLSA", data, 0, len(data))
    except dnspython_exception.DNSException:
        return None
    return TLSARecord(rdata.usage, rdata.selector, rdata.mtype, bytes(rdata.cert))


async def tlsa_policy(reactor, resolver, host: str, port: int) -> DANEPolicy | None:
    """The DANE policy of MX ``host`` reached on ``port`` (``_port._tcp.host``), or
    None (no secure TLSA). DNSTemporaryError when the lookup fails."""
    servers = list(resolver.client.servers) + list(resolver.client.dynServers)
    if not servers:
        raise DNSTemporaryError("no DNS server to ask for TLSA records")
    timeout = float(resolver.config.timeout)
    name = f"_{port}._tcp.{host.rstrip('.')}"
    secure, rcode, answers = await secure_query(reactor, servers[0], name, TLSA, timeout)
    if rcode not in (dns.OK, dns.ENAME):
        raise DNSTemporaryError(f"{name}: TLSA lookup failed (rcode {rcode})")
    if not secure or not answers:
        return None
    records = [r for r in (_tlsa_record(rr.payload) for rr in answers[:MAX_TLSA_RECORDS])
               if r is not None]
    usable = tuple(r for r in records if r.usable)
    return DANEPolicy(host, "verify" if usable else "encrypt", usable)


async def secure_mx(reactor, resolver, domain: str) -> bool:
    """True when the resolver vouches (AD) for the MX records of ``domain``: DANE is
    applied only to MX hosts learned securely (RFC 7672 §2.2.1)."""
    servers = list(resolver.client.servers) + list(resolver.client.dynServers)
    if not servers:
        return False
    try:
        secure, _rcode, _answers = await secure_query(
            reactor, servers[0], domain, dns.MX, float(resolver.config.timeout))
    except DNSTemporaryError:
        return False
    return secure


# -- checking the certificate ------------------------------------------------------------
@implementer(IOpenSSLClientConnectionCreator)
class DANEConnectionCreator:
    """TLS for a DANE host: the handshake accepts any chain, which is collected and
    judged against the TLSA records (``check``) before anything is sent."""

    def __init__(self, policy: DANEPolicy):
        self.policy = policy
        self.chain: dict[int, x509.Certificate] = {}
        self._options = ssl.CertificateOptions()

    def clientConnectionForTLS(self, tlsProtocol):
        context = self._options.getContext()
        context.set_verify(SSL.VERIFY_PEER, self._collect)
        connection = SSL.Connection(context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_tlsext_host_name(self.policy.host.encode("idna"))
        return connection

    def _collect(self, connection, certificate, errno, depth, ok) -> bool:
        if depth < 16:
            self.chain[depth] = certificate.to_cryptography()
        return True                        # judged after the handshake, in check()

    def check(self) -> str | None:
        """None when the chain satisfies the policy, else why not."""
        if self.policy.mode == "encrypt":
            return None
        chain = [self.chain[d] for d in sorted(self.chain)]
        if not chain:
            return "no certificate was presented"
        leaf = chain[0]
        for record in self.policy.records:
            if record.usage == DANE_EE and record.matches(leaf):
                return None
            if record.usage == DANE_TA:
                anchor = next((c for c in chain if record.matches(c)), None)
                if anchor is not None and _chains_to(leaf, chain[1:], anchor) and \
                        _names(leaf, self.policy.host):
                    return None
        return f"the certificate of {self.policy.host} matches none of its TLSA records"


def _chains_to(leaf: x509.Certificate, intermediates: list[x509.Certificate],
               anchor: x509.Certificate) -> bool:
    """True when ``leaf`` verifies up to ``anchor`` (the only trusted certificate)."""
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(anchor))
    if leaf == anchor:
        return True
    context = crypto.X509StoreContext(
        store, crypto.X509.from_cryptography(leaf),
        [crypto.X509.from_cryptography(c) for c in intermediates if c != anchor])
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError:
        return False
    return True


def _names(leaf: x509.Certificate, host: str) -> bool:
    """RFC 7672 §3.2.2: with DANE-TA the certificate must name the MX host."""
    try:
        verify_certificate_hostname(leaf, host)
    except (service_identity.VerificationError, service_identity.CertificateError):
        return False
    return True
