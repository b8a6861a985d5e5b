"""The typed configuration model that both the YAML and the James-style XML load into.

Every setting a user can write lives here, with its default and a one-line doc in the
field metadata (``doc``), so reference documentation can be generated from this file.
Names follow James where James has one (``servernames``, ``authRequired``,
``verifyIdentity``, ``authorizedAddresses``, ``maxmessagesize``…).

``source`` fields hold ``"file:line"`` of the element that defined a thing, so errors
found after loading (an unknown processor, a mailet class that does not exist) still
point at the right line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

MAX_WORKERS = 256      # worker processes of one ``serve`` at most


def doc(text: str, **kw) -> Any:
    """A dataclass field with documentation metadata."""
    default = kw.pop("default", None)
    factory = kw.pop("default_factory", None)
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": text, **kw})
    return field(default=default, metadata={"doc": text, **kw})


@dataclass
class MatcherSpec:
    """``match="Name=condition"`` or a named composite matcher."""

    name: str = doc("matcher class name (short, dotted path or entry point)")
    condition: str | None = doc("text after the first '='", default=None)
    children: list[MatcherSpec] = doc("operands of a composite (And/Or/Not/Xor)",
                                        default_factory=list)
    source: str | None = None


@dataclass
class MailetSpec:
    """One matcher/mailet pair in a processor."""

    mailet: str = doc("mailet class name (short, dotted path or entry point)")
    match: MatcherSpec | None = doc("the matcher; None means All", default=None)
    notmatch: bool = doc("invert the matcher (James's notmatch=)", default=False)
    parameters: dict[str, Any] = doc("init parameters of the mailet", default_factory=dict)
    on_mailet_exception: str = doc(
        "error | ignore | propagate | <processor>: what to do when the mailet raises",
        default="error")
    on_match_exception: str = doc(
        "error | nomatch | matchall | propagate | <processor>: when the matcher raises",
        default="error")
    source: str | None = None


@dataclass
class ProcessorSpec:
    """A named processor: an ordered list of pairs plus composite matchers it names."""

    name: str = doc("the processor's state name")
    mailets: list[MailetSpec] = doc("pairs, in order", default_factory=list)
    matchers: dict[str, MatcherSpec] = doc("named composite matchers of this processor",
                                           default_factory=dict)
    source: str | None = None


@dataclass
class SpoolManagerConfig:
    threads: int = doc("mails processed concurrently", default=16)
    max_tries: int = doc("processing attempts before a mail goes to the error repository",
                         default=5)
    error_repository: str = doc("repository for mails whose processing keeps failing",
                                default="error")
    max_state_changes: int = doc("processor transitions per run before loop protection "
                                 "sends the mail to error", default=100)
    max_mime_parts: int = doc("MIME parts a mailet's parse of a message may build; a "
                              "message with more is not parsed (see SECURITY.md)",
                              default=1000)
    max_mime_depth: int = doc("levels of MIME nesting a parse may build", default=100)
    lease_seconds: float = doc("how long a node's claim on a spooled mail lasts without "
                               "renewal; after it another node takes the mail over",
                               default=300.0)
    processors: dict[str, ProcessorSpec] = doc("the processors by name",
                                               default_factory=dict)
    source: str | None = None


@dataclass
class TLSConfig:
    certificate: str | None = doc("PEM certificate (chain) file", default=None)
    private_key: str | None = doc("PEM private key file", default=None)
    minimum_version: str = doc("lowest TLS version accepted: TLSv1.2 or TLSv1.3",
                               default="TLSv1.2")
    source: str | None = None


@dataclass
class SMTPServerConfig:
    """One SMTP listener and its policy (James's ``smtpserver``)."""

    name: str = doc("label used in logs and metrics", default="smtp")
    listen: str = doc("Twisted endpoint string", default="tcp:2525:interface=127.0.0.1")
    implicit_tls: bool = doc("TLS from the first byte (port 465 style)", default=False)
    starttls: bool = doc("offer STARTTLS when a certificate is configured", default=True)
    helo_name: str | None = doc("name in the greeting and EHLO; default servername",
                                default=None)
    greeting: str | None = doc("text after 220 <helloName>", default=None)
    auth_required: str = doc("true | false | announce (James's authRequired)",
                             default="true")
    auth_before_mail: bool = doc("refuse MAIL until AUTH (submission ports)",
                                 default=False)
    require_ssl: bool = doc("refuse AUTH before TLS (James's auth.requireSSL)",
                            default=False)
    verify_identity: str = doc("strict | relaxed | false (James's verifyIdentity)",
                               default="strict")
    authorized_addresses: list[str] = doc("networks that may relay without AUTH",
                                          default_factory=lambda: ["127.0.0.0/8", "::1"])
    max_message_size: int = doc("octets; 0 = unlimited; a bare number is KiB "
                                "(see Units)",
                                default=0)
    max_header_size: int = doc("octets of the header block (up to the first empty line) "
                               "of a message; a longer one is refused with 552 5.3.4; "
                               "0 = unlimited", default=1024 * 1024)
    max_recipients: int = doc("recipients per transaction", default=1000)
    connection_limit: int = doc("concurrent connections; 0 = unlimited", default=0)
    connection_limit_per_ip: int = doc("per client address; 0 = unlimited", default=0)
    connection_timeout: float = doc("idle seconds before 421", default=300.0)
    helo_required: bool = doc("require HELO/EHLO before MAIL", default=True)
    enable_vrfy: bool = doc("VRFY answers 250/550 instead of 252", default=False)
    reject_unknown_local_users: bool = doc("550 5.1.1 at RCPT for unknown local users",
                                           default=True)
    auth_failure_delay: float = doc("seconds before answering a failed AUTH", default=1.0)
    dmarc_reject: bool = doc("check DKIM, SPF and DMARC before 250 on mail from outside "
                             "and refuse a DMARC p=reject failure with 550 5.7.1 "
                             "(docs/authentication.md)", default=False)
    arc_trusted_sealers: list[str] = doc(
        "with dmarcReject: domains whose passing ARC seal lets a DMARC failure through "
        "(ARCVerify joins the checks; as the DMARC mailet's arcTrustedSealers)",
        default_factory=list)
    tls: TLSConfig | None = doc("certificate for STARTTLS / implicit TLS", default=None)
    source: str | None = None


@dataclass
class POP3ServerConfig:
    """One POP3 listener (James's ``pop3server``)."""

    name: str = doc("label used in logs", default="pop3")
    listen: str = doc("Twisted endpoint string", default="tcp:1110:interface=127.0.0.1")
    implicit_tls: bool = doc("TLS from the first byte (POP3S, port 995)", default=False)
    require_ssl: bool = doc("refuse USER/PASS/AUTH before STLS", default=False)
    connection_timeout: float = doc("idle seconds before the session is closed",
                                    default=600.0)
    connection_limit: int = doc("concurrent connections; 0 = unlimited", default=0)
    connection_limit_per_ip: int = doc("per client address; 0 = unlimited", default=0)
    auth_failure_delay: float = doc("seconds before answering a failed login", default=1.0)
    tls: TLSConfig | None = doc("certificate for STLS / POP3S", default=None)
    source: str | None = None


@dataclass
class IMAPServerConfig:
    """One IMAP listener (James's ``imapserver``)."""

    name: str = doc("label used in logs", default="imap")
    listen: str = doc("Twisted endpoint string", default="tcp:1143:interface=127.0.0.1")
    implicit_tls: bool = doc("TLS from the first byte (IMAPS, port 993)", default=False)
    require_ssl: bool = doc("advertise LOGINDISABLED and refuse LOGIN/AUTHENTICATE "
                            "before STARTTLS (James's plainAuthDisallowed)", default=False)
    connection_timeout: float = doc("idle seconds before the autologout (RFC 3501 "
                                    "§5.4: at least 30 minutes)", default=1800.0)
    connection_limit: int = doc("concurrent connections; 0 = unlimited", default=0)
    connection_limit_per_ip: int = doc("per client address; 0 = unlimited", default=0)
    auth_failure_delay: float = doc("seconds before answering a failed login", default=1.0)
    enable_idle: bool = doc("offer IDLE (RFC 2177) for pushed new mail", default=True)
    idle_keepalive: float = doc("seconds between '* OK still here' lines during IDLE, "
                                "so NAT boxes keep the connection; 0 = none",
                                default=120.0)
    idle_keepalive_unit: str = doc("James's idleTimeIntervalUnit; only seconds",
                                   default="seconds")
    max_message_size: int = doc("octets of the largest APPEND literal (a bare number is "
                                "KiB); a larger one is refused before it is sent",
                                default=50 * 1024 * 1024)
    tls: TLSConfig | None = doc("certificate for STARTTLS / IMAPS", default=None)
    source: str | None = None


@dataclass
class AuthThrottleConfig:
    """Login throttling per client address, for every SMTP and POP3 listener."""

    max_failures: int = doc("failed logins from one address (IPv6: one /64) within "
                            "window before it is blocked; checks in flight count too",
                            default=5)
    window: float = doc("seconds a failed login counts", default=300.0)
    block: float = doc("seconds an address stays blocked (SMTP 454 4.7.0, POP3 "
                       "-ERR [SYS/TEMP])", default=300.0)
    max_concurrent_per_ip: int = doc("password checks in flight per address; more get "
                                     "the temporary refusal (a value below maxFailures "
                                     "lets a burst spend less than the budget)", default=5)
    ipv6_prefix: int = doc("IPv6 addresses count per network of this prefix length",
                           default=64)
    max_tracked: int = doc("addresses (and shared failure rows) remembered at most; the "
                           "oldest are forgotten first", default=100_000)
    source: str | None = None


@dataclass
class StorageConfig:
    url: str | None = doc("SQLAlchemy URL; default sqlite under data_dir", default=None)
    data_dir: str = doc("directory for the database and blobs", default="./var")
    inline_blob_limit: int = doc(
        "messages up to this size live in the database, written in the same commit as "
        "their spool row; larger ones are files (the file, then its directory, are "
        "fsynced before that commit). 128k keeps mails with a small attachment in one "
        "fsync: on SQLite a 100 KB body took 3.1 ms stored in the database against 7.1 "
        "ms as a file (docs/BENCHMARKS.md)", default=131072)
    blob_dir: str | None = doc("directory for larger message files; default "
                               "<data_dir>/blobs (all nodes of a cluster must share it)",
                               default=None)
    pool_size: int = doc("database connections (PostgreSQL)", default=5)
    source: str | None = None


@dataclass
class DNSConfig:
    servers: list[str] = doc("resolvers host[:port]; default /etc/resolv.conf",
                             default_factory=list)
    hosts: dict[str, list[str]] = doc("static MX table: domain → [host[:port], …]",
                                      default_factory=dict)
    timeout: float = doc("seconds per DNS query", default=10.0)
    source: str | None = None


@dataclass
class TLSPolicyConfig:
    """Which outbound TLS policies RemoteDelivery applies per destination (not to a
    smarthost or gateway: those are configured by hand)."""

    mta_sts: bool = doc("apply the destination's MTA-STS policy (RFC 8461): fetched over "
                        "HTTPS, cached in the database; `enforce` defers mail that cannot "
                        "go over verified TLS to a listed MX", default=True)
    dane: bool = doc("apply DANE (RFC 7672): TLSA records of each MX, trusted only when "
                     "the resolver (`dns.servers`) validates DNSSEC and says so with the "
                     "AD bit — run a validating resolver on loopback", default=False)
    tls_reports: bool = doc("count TLS sessions and failures per policy domain for "
                            "TLS-RPT (RFC 8460; `mailet-mta tls-report`)", default=True)
    ca_file: str | None = doc("PEM file of the certificate authorities trusted for "
                              "MTA-STS and verified delivery; default the system's",
                              default=None)
    fetch_timeout: float = doc("seconds to fetch an MTA-STS policy", default=30.0)
    source: str | None = None


@dataclass
class SmarthostConfig:
    """The relay host every outbound mail goes through (Postfix's ``relayhost``)."""

    hosts: list[str] = doc("host[:port] of the relay; several are tried in order",
                           default_factory=list)
    port: int = doc("port of a host written without one (587 for submission)",
                    default=25)
    username: str | None = doc("AUTH user at the relay; sent only over TLS unless the "
                               "relay is on loopback", default=None)
    password: str | None = doc("AUTH password; read from this file at delivery time, "
                               "never stored with a queued mail", default=None)
    source: str | None = None


@dataclass
class LoggingConfig:
    level: str = doc("debug | info | warn | error", default="info")
    file: str | None = doc("log file; default stdout", default=None)
    format: str = doc("text | json", default="text")
    source: str | None = None


@dataclass
class ServerConfig:
    """The whole configuration of one mailet-mta process."""

    servernames: list[str] = doc("local mail domains (plus the domains table)",
                                 default_factory=lambda: ["localhost"])
    postmaster: str | None = doc("postmaster address; default postmaster@<first servername>",
                                 default=None)
    storage: StorageConfig = doc("database and blob store", default_factory=StorageConfig)
    spoolmanager: SpoolManagerConfig = doc("the processors", default_factory=SpoolManagerConfig)
    smtpservers: list[SMTPServerConfig] = doc("SMTP listeners", default_factory=list)
    pop3servers: list[POP3ServerConfig] = doc("POP3 listeners", default_factory=list)
    imapservers: list[IMAPServerConfig] = doc("IMAP listeners", default_factory=list)
    dns: DNSConfig = doc("resolver settings", default_factory=DNSConfig)
    auth_throttle: AuthThrottleConfig = doc("login throttling per client address",
                                            default_factory=AuthThrottleConfig)
    smarthost: SmarthostConfig | None = doc(
        "relay host for all outbound mail (RemoteDelivery's gateway unless its own "
        "parameters set one); none: each domain's MX", default=None)
    tls_policy: TLSPolicyConfig = doc("outbound TLS policy: MTA-STS, DANE, TLS-RPT",
                                      default_factory=TLSPolicyConfig)
    logging: LoggingConfig = doc("log output", default_factory=LoggingConfig)
    workers: int | None = doc(
        "processes ``serve`` runs (1 to 256, or auto = one per core on PostgreSQL, one "
        "process on SQLite, whose single writer made a second worker slower in "
        "docs/BENCHMARKS.md): with more than one, a supervisor opens every listener "
        "once and its worker processes share them, each a node of the database "
        "(docs/operations.md, Worker processes); James has no equivalent (one JVM, "
        "threads)", default=None,
        shown_default="auto")
    extra: dict[str, Any] = doc("sections other subsystems read (e.g. metrics)",
                                default_factory=dict)
    path: str | None = None
    warnings: list[str] = field(default_factory=list)  # "file:line: text" from loading

    @property
    def worker_count(self) -> int:
        """``workers`` with ``auto`` (None) resolved: the number of cores on
        PostgreSQL, where workers are simply more nodes; one process on SQLite, where
        every worker waits for the one writer's lock (measured on two cores, two
        workers had a p99 five to ten times one process's at 1 KB x 16 and were not
        faster at any size in every repeat: docs/BENCHMARKS.md, "workers 1 and 2")."""
        if self.workers is not None:
            return self.workers
        url = self.storage.url or ""
        if not url or url.startswith("sqlite"):
            return 1
        return max(1, min(MAX_WORKERS, os.cpu_count() or 1))

    @property
    def server_name(self) -> str:
        return self.servernames[0] if self.servernames else "localhost"

    @property
    def postmaster_address(self) -> str:
        return self.postmaster or f"postmaster@{self.server_name}"
