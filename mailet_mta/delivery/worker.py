"""Delivering the entries of one destination over one reused SMTP session.

For each entry: try the destination's hosts in order (MX preference, or the gateways);
a host that cannot be reached or answers 4xx passes the still-pending recipients to
the next host. Final answers (2xx, 5xx) are written to the entry before anything else
happens to it. What is left pending is rescheduled, or bounced when the retries are
used up; failed recipients are bounced at once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import deque

from twisted.logger import Logger

from ..api import ATTR_BODY, ATTR_DSN_ENVID, ATTR_DSN_RCPT, ATTR_DSN_RET, ATTR_SMTPUTF8
from ..logging_setup import log_delivery
from . import queue_store
from .dane import DANEPolicy, secure_mx, tlsa_policy
from .mta_sts import PolicyError, STSPolicy
from .options import DeliveryOptions
from .queue_store import FAILED, PENDING, SENT, QueueEntry
from .reports import failure_mail, success_mail, unreported_failures, unreported_successes
from .resolver import DNSPermanentError, DNSTemporaryError
from .session import DEFERRED, Envelope, HostFailure, Outcome, SMTPSession
from .smtp_client import SMTPConnectionLost

log = Logger(namespace="mailet_mta.delivery")


class Destination:
    """Entries waiting for one destination (domain or gateway) and its workers."""

    def __init__(self, key: tuple, domain: str, options: DeliveryOptions):
        self.key = key
        self.domain = domain
        self.options = options
        self.queue: deque[WorkItem] = deque()
        self.workers = 0

    def add(self, entry: QueueEntry) -> None:
        self.queue.append(WorkItem(entry))


class WorkItem:
    """One claimed entry on its way through the hosts."""

    def __init__(self, entry: QueueEntry):
        self.entry = entry
        self.options = DeliveryOptions.from_dict(entry.options)
        self.temp_errors: dict[str, Outcome] = {}
        self.dns_temporary: str | None = None


class DestinationWorker:
    """Takes entries from a Destination until it is empty, reusing one session."""

    def __init__(self, service, dest: Destination):
        self.service = service
        self.dest = dest
        self.options = dest.options
        self.session: SMTPSession | None = None
        self.down: dict[tuple[str, int], HostFailure] = {}
        self.no_tls: set[str] = set()
        self.no_host_reason: str | None = None
        self.policy_type: str | None = None        # "sts" when a policy applies
        self.dane_applies = False
        self.sts_testing = False                   # MTA-STS mode testing: check, report
        self.sts_unlisted: set[str] = set()        # MX hosts the policy does not list
        self.dane: dict[tuple[str, int], DANEPolicy | None] = {}

    async def run(self) -> None:
        try:
            hosts, dns_problem = await self._route()
            if dns_problem is None and not self.options.gateways:
                hosts = await self._apply_mta_sts(hosts)
                self.dane_applies = await self._dane_applies(hosts)
            while self.dest.queue:
                item = self.dest.queue.popleft()
                try:
                    if dns_problem is not None:
                        self._apply_dns_problem(item, dns_problem)
                    else:
                        await self._deliver(item, hosts)
                    await self._finish(item)
                except Exception:  # noqa: BLE001 - one entry must not stop the worker
                    log.failure("delivering outgoing entry {id} failed", id=item.entry.id)
                    self.service.track_write(self.service.db.write(
                        queue_store.reschedule, item.entry,
                        self.service.clock.seconds() + 60))
                finally:
                    self.service.entry_done()
        finally:
            if self.session is not None:
                await self.session.quit()

    async def _route(self):
        if self.options.gateways:
            return list(self.options.gateways), None
        try:
            mx = await self.service.resolver.mx_hosts(self.dest.domain)
        except (DNSPermanentError, DNSTemporaryError) as exc:
            return [], exc
        return [(host, port) for _pref, host, port in mx], None

    async def _apply_mta_sts(self, hosts: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The hosts the destination's MTA-STS policy allows (RFC 8461 §5); under
        ``enforce`` the sessions must then use verified TLS."""
        sts = self.service.mta_sts
        domain = self.dest.domain
        if sts is None or (domain in self.service.resolver.static and
                           all(_is_address(host) for host, _port in hosts)):
            return hosts                  # dns.hosts routing to addresses overrides DNS
        try:
            policy: STSPolicy | None = await sts.policy_for(domain)
        except PolicyError as exc:
            log.warn("{domain}: {error}; delivering without MTA-STS", domain=domain,
                     error=str(exc))
            self._count_tls("sts", exc.result_type)
            return hosts
        except Exception:  # noqa: BLE001 - a policy problem must not stop delivery
            log.failure("MTA-STS lookup for {domain} failed", domain=domain)
            return hosts
        if policy is None or policy.mode == "none":
            return hosts
        self.policy_type = "sts"
        allowed = [(host, port) for host, port in hosts if policy.allows(host)]
        refused = [host for host, _port in hosts if not policy.allows(host)]
        self.sts_unlisted = set(refused)
        for host in refused:
            log.warn("{domain}: MX {host} is not in its MTA-STS policy (mode {mode}, "
                     "mx {mx})", domain=domain, host=host, mode=policy.mode,
                     mx=" ".join(policy.mx))
            self._count_tls("sts", "validation-failure", host)
        if policy.mode != "enforce":
            self.sts_testing = True
            return hosts                  # testing: report only (§5)
        if not allowed:
            self.no_host_reason = (f"4.7.5 no MX host of {domain} matches its MTA-STS "
                                   f"policy (mx: {', '.join(policy.mx)})")
        self.options = dataclasses.replace(self.options, starttls="required",
                                           verify_server_identity=True)
        return allowed

    async def _dane_applies(self, hosts: list[tuple[str, int]]) -> bool:
        """DANE is looked at for MX hosts learned securely: a DNSSEC-validated MX
        answer, or a ``dns.hosts`` route written as host names (RFC 7672 §2.2.1)."""
        svc = self.service
        if not svc.dane or not hosts:
            return False
        if self.dest.domain in svc.resolver.static:
            return not all(_is_address(host) for host, _port in hosts)
        return await secure_mx(svc.reactor, svc.resolver, self.dest.domain)

    async def _dane_for(self, host: str, port: int) -> DANEPolicy | None:
        """The DANE policy of one MX host (looked up once per worker); HostFailure
        when its TLSA lookup fails (the host is not used now, RFC 7672 §2.2)."""
        if (host, port) not in self.dane:
            try:
                policy = await tlsa_policy(self.service.reactor, self.service.resolver,
                                           host, port)
            except DNSTemporaryError as exc:
                raise HostFailure(f"{host}: {exc}; not delivering without knowing its "
                                  f"DANE policy") from None
            self.dane[(host, port)] = policy
        return self.dane[(host, port)]

    def _count_tls(self, policy_type: str, result_type: str, mx_host: str = "") -> None:
        """One session (or policy failure) for TLS-RPT."""
        if self.service.tls_reports is not None:
            self.service.tls_reports.record(self.dest.domain, policy_type, result_type,
                                            mx_host)

    def _apply_dns_problem(self, item: WorkItem, problem: Exception) -> None:
        if isinstance(problem, DNSPermanentError):
            status = "5.1.10" if "null MX" in str(problem) else "5.1.2"
            for r in item.entry.pending():
                _set(r, FAILED, 550, f"{status} {problem}", permanent=True)
        else:
            item.dns_temporary = str(problem)

    # -- one entry through the hosts ----------------------------------------------------------
    async def _deliver(self, item: WorkItem, hosts) -> None:
        entry = item.entry
        for host, port in hosts:
            pending = [r["address"] for r in entry.pending()]
            if not pending:
                return
            try:
                session = await self._session_for(host, port)
            except HostFailure as exc:
                for a in pending:
                    item.temp_errors[a] = Outcome(DEFERRED, exc.code, str(exc))
                continue
            try:
                outcomes = await session.deliver(self._envelope(entry, pending),
                                                 item.options.send_partial)
            except (SMTPConnectionLost, HostFailure) as exc:
                self.session = None
                session.protocol.abort()
                for a in pending:
                    item.temp_errors[a] = Outcome(DEFERRED, None, f"{session.peer}: {exc}")
                continue
            final = False
            for address, outcome in outcomes.items():
                if outcome.status == DEFERRED:
                    item.temp_errors[address] = outcome
                    continue
                final = True
                item.temp_errors.pop(address, None)
                _set(_recipient(entry, address), outcome.status, outcome.code, outcome.text,
                     permanent=outcome.permanent)
                if outcome.status == SENT:
                    self._log(entry, address, f"{host}[{session.ip}]:{session.port}", "sent",
                              f"{outcome.code or ''} {outcome.text}")
            if final and entry.pending():
                await self._record(entry)
        if not hosts:
            for a in [r["address"] for r in entry.pending()]:
                item.temp_errors[a] = Outcome(DEFERRED, None, self.no_host_reason or
                                              f"no host for {self.dest.domain}")

    async def _session_for(self, host: str, port: int) -> SMTPSession:
        s = self.session
        if s is not None and (s.host, s.port) == (host, port) and s.protocol.is_open:
            return s
        if s is not None:
            self.session = None
            await s.quit()
        if (host, port) in self.down:
            raise self.down[(host, port)]
        try:
            addresses = await self.service.resolver.lookup(host)
        except (DNSPermanentError, DNSTemporaryError) as exc:
            addresses, failure = [], HostFailure(f"{host}: {exc}")
        else:
            failure = HostFailure(f"{host} has no address")
        for ip in addresses:
            try:
                self.session = await self._open(host, ip, port)
                return self.session
            except HostFailure as exc:
                failure = exc
        self.down[(host, port)] = failure
        raise failure

    def _password(self, host: str, port: int) -> str | None:
        """The gateway password: from the configuration (a row queued by an older
        version may still carry its own); HostFailure when none is configured."""
        options = self.options
        if options.username is None:
            return None
        if options.password is not None:
            return options.password
        password = self.service.credentials.password(host, port, options.username)
        if password is None:
            raise HostFailure(f"{host}:{port}: no password is configured for the gateway "
                              f"user {options.username}; set smarthost.password, or "
                              f"gatewayPassword next to the RemoteDelivery gateway")
        return password

    async def _open(self, host: str, ip: str, port: int) -> SMTPSession:
        svc = self.service
        helo = self.options.helo_name or svc.helo_name
        password = self._password(host, port)
        dane = await self._dane_for(host, port) if self.dane_applies else None
        if dane is not None and dane.mode == "encrypt" and self.options.verify_server_identity:
            dane = None     # unusable TLSA: the certificate is verified as asked instead
        policy_type = "tlsa" if dane is not None else self.policy_type
        if dane is None and host in self.sts_unlisted:
            policy_type = None            # counted once already, as not in the policy
        if (self.sts_testing and dane is None and ip not in self.no_tls
                and host not in self.sts_unlisted and not self.options.verify_server_identity):
            probed = await self._open_verified_for_report(host, ip, port, helo, password)
            if probed is not None:
                return probed
            policy_type = None            # the failure is counted; go on unverified
        try:
            session = await SMTPSession.open(svc.reactor, svc.clock, host, ip, port,
                                             self.options, helo,
                                             use_tls=ip not in self.no_tls,
                                             password=password, trust_root=svc.trust_root,
                                             dane=dane)
        except HostFailure as exc:
            if policy_type is not None and (exc.starttls_missing or exc.tls_failed):
                self._count_tls(policy_type, "starttls-not-supported"
                                if exc.starttls_missing else "validation-failure", host)
            # With verifyServerIdentity (or DANE) a failed handshake may be a failed
            # verification: falling back to plaintext would hand the mail to whoever
            # failed it.
            if (not exc.tls_failed or self.options.starttls == "required"
                    or self.options.verify_server_identity or dane is not None):
                raise
            log.warn("{host} [{ip}]: {error}; delivering without TLS (startTLS=opportunistic)",
                     host=host, ip=ip, error=str(exc))
            self.no_tls.add(ip)
            return await SMTPSession.open(svc.reactor, svc.clock, host, ip, port,
                                          self.options, helo, use_tls=False,
                                          password=password)
        if policy_type is not None:
            self._count_tls(policy_type, "success", "")
        return session

    async def _open_verified_for_report(self, host: str, ip: str, port: int, helo: str,
                                        password: str | None) -> SMTPSession | None:
        """MTA-STS ``testing``: try verified TLS and count the outcome for TLS-RPT; the
        session when it worked, None after a failed verification (the caller then
        connects as it would without the policy)."""
        svc = self.service
        options = dataclasses.replace(self.options, verify_server_identity=True)
        try:
            session = await SMTPSession.open(svc.reactor, svc.clock, host, ip, port, options,
                                             helo, password=password,
                                             trust_root=svc.trust_root)
        except HostFailure as exc:
            if not exc.tls_failed:
                raise
            self._count_tls("sts", "validation-failure", host)
            log.warn("{host} [{ip}]: {error} (MTA-STS testing: delivering anyway)",
                     host=host, ip=ip, error=str(exc))
            return None
        self._count_tls("sts", "success" if session.tls else "starttls-not-supported",
                        "" if session.tls else host)
        return session

    def _envelope(self, entry: QueueEntry, recipients: list[str]) -> Envelope:
        attrs = entry.attributes
        source = self.service.blobs.source(entry.blob_id, entry.blob_size, entry.blob_data)
        return Envelope(sender=entry.sender, recipients=recipients, source=source,
                        size=source.size or 0, body=attrs.get(ATTR_BODY),
                        smtputf8=bool(attrs.get(ATTR_SMTPUTF8)),
                        envid=attrs.get(ATTR_DSN_ENVID), ret=attrs.get(ATTR_DSN_RET),
                        dsn_rcpt=attrs.get(ATTR_DSN_RCPT) or {})

    def _log(self, entry: QueueEntry, address: str, relay: str, status: str, reply) -> None:
        """The Postfix-style line for one recipient's outcome (and its metric)."""
        log_delivery(entry.mail_name, entry.sender, address, relay,
                     self.service.clock.seconds() - entry.created, status, reply)

    async def _record(self, entry: QueueEntry) -> None:
        await self.service.db.write(queue_store.record_recipients, entry.id,
                                    self.service.node_name, entry.recipients)

    # -- after the hosts ---------------------------------------------------------------------------
    async def _finish(self, item: WorkItem) -> None:
        """Reschedule or expire what is pending, send reports, then update the row."""
        entry, options = item.entry, item.options
        now = self.service.clock.seconds()
        delay = None
        if entry.pending():
            entry.attempts += 1
            if item.dns_temporary is not None:
                entry.dns_failures += 1
            errors = [f"{a}: {o.text}" for a, o in item.temp_errors.items()]
            entry.last_error = item.dns_temporary or ("; ".join(errors)[:4000] or None)
            delay = options.delay_after(entry.attempts)
            if delay is None or entry.dns_failures > options.max_dns_retries:
                delay = None
                self._expire(item)
            for r in entry.pending():
                outcome = item.temp_errors.get(r["address"])
                self._log(entry, r["address"], self.dest.domain, "deferred",
                          item.dns_temporary or (outcome.text if outcome else "no answer"))

        failed, sent = unreported_failures(entry), unreported_successes(entry)
        for r in failed:
            self._log(entry, r["address"], self.dest.domain, "bounced",
                      f"{r.get('code') or ''} {r.get('error') or ''}")
        sent = sent if options.on_success else []
        if failed or sent:
            await self._record(entry)
            await self._report(entry, failed, sent, options)
        if delay is None:
            self.service.delivered += 1
            self.service.track_write(self.service.db.write(queue_store.remove, entry.id))
        else:
            self.service.track_write(self.service.db.write(queue_store.reschedule, entry,
                                                           now + delay))

    def _expire(self, item: WorkItem) -> None:
        entry = item.entry
        for r in entry.pending():
            outcome = item.temp_errors.get(r["address"])
            if item.dns_temporary is not None:
                text = f"4.4.3 {item.dns_temporary} (maxDnsProblemRetries reached)"
            elif outcome is not None:
                text = outcome.text
            else:
                text = f"4.4.7 delivery time expired after {entry.attempts} attempts"
            _set(r, FAILED, outcome.code if outcome else None, text, permanent=False)

    async def _report(self, entry: QueueEntry, failed, sent, options) -> None:
        source = self.service.blobs.source(entry.blob_id, entry.blob_size, entry.blob_data)
        if failed:
            await self.service.inject(failure_mail(entry, failed, source,
                                                   options.bounce_processor))
            for r in failed:
                r["bounced"] = True
        if sent:
            await self.service.inject(success_mail(entry, sent, source, options.on_success))
            for r in sent:
                r["reported"] = True


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _recipient(entry: QueueEntry, address: str) -> dict:
    for r in entry.recipients:
        if r["address"] == address and r["status"] == PENDING:
            return r
    raise KeyError(address)


def _set(r: dict, status: str, code, text: str, permanent: bool) -> None:
    r.update(status=status, code=code, error=text, permanent=permanent)

