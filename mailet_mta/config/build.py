"""Turn a :class:`~.tree.Node` tree (from YAML or XML) into the typed ServerConfig.

Each section has a table of the key names it accepts — James's camelCase names first,
then the snake_case model names — mapped to a model field and a converter. A key not in
the table is an error with a "did you mean"; two spellings of one field in the same
section are an error too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..api import ConfigurationError, parse_host_list
from . import values as v
from .model import (
    AuthThrottleConfig,
    DNSConfig,
    IMAPServerConfig,
    LoggingConfig,
    MailetSpec,
    MatcherSpec,
    POP3ServerConfig,
    ProcessorSpec,
    ServerConfig,
    SmarthostConfig,
    SMTPServerConfig,
    SpoolManagerConfig,
    StorageConfig,
    TLSConfig,
    TLSPolicyConfig,
    doc,
)
from .retention import build_repositories
from .tree import Node, attempt, fail, suggestion
from .validate import check_domain, check_postmaster
from .webadmin import build_webadmin
from .webmail import build_webmail

Table = dict[str, tuple[str, Callable[[Node, str], Any]]]


def keys(field: str, convert, *names: str) -> Table:
    return {name: (field, convert) for name in names}


def mapping(node: Node, what: str) -> dict[str, Node]:
    if not node.is_map:
        fail(f"{what} must be a block of keys (a mapping), not "
             f"{'a list' if node.is_list else repr(node.value)}", node.source)
    return node.value


def read_keys(node: Node, what: str, table: Table, target: Any,
              special: tuple[str, ...] = (), seen: dict[str, str] | None = None
              ) -> dict[str, Node]:
    """Set ``target``'s fields from the keys of ``node``; return the ``special`` ones.

    ``seen`` (field → key written) spans several calls when one setting may be
    written in more than one place (``requireSSL`` or ``auth.requireSSL``).
    """
    seen = {} if seen is None else seen
    rest: dict[str, Node] = {}
    for name, child in mapping(node, what or "the file").items():
        if name in special:
            rest[name] = child
            continue
        label = f"{what}.{name}" if what else name
        attempt(lambda: _read_key(name, child, label, what, table, target, special, seen),
                label)
    return rest


def _read_key(name: str, child: Node, label: str, what: str, table: Table, target: Any,
              special: tuple[str, ...], seen: dict[str, str]) -> None:
    if name not in table:
        fail(f"unknown key {name!r} in {what or 'the top level'}"
             f"{suggestion(name, [*table, *special])}; known keys: "
             f"{', '.join(sorted({*table, *special}, key=str.lower))}", child.source)
    field, convert = table[name]
    if field in seen:
        fail(f"{label} sets the same thing as {seen[field]}; keep one of them",
             child.source)
    seen[field] = label
    setattr(target, field, convert(child, label))


# -- storage, dns, logging ------------------------------------------------------------
STORAGE_KEYS: Table = {
    **keys("url", v.optional_text, "url"),
    **keys("data_dir", v.file_path, "dataDir", "data_dir"),
    **keys("inline_blob_limit", v.size(), "inlineBlobLimit", "inline_blob_limit"),
    **keys("pool_size", v.integer(1), "poolSize", "pool_size"),
    **keys("blob_dir", v.file_path, "blobDir", "blob_dir"),
}


def build_storage(node: Node, what: str) -> StorageConfig:
    cfg = StorageConfig(source=node.source)
    read_keys(node, what, STORAGE_KEYS, cfg)
    return cfg


def dns_hosts(node: Node, what: str) -> dict[str, list[str]]:
    hosts = {}
    for domain, child in mapping(node, what).items():
        hosts[check_domain(domain, f"{what} domain", child.source)] = \
            v.string_list(child, f"{what}.{domain}")
    return hosts


DNS_KEYS: Table = {
    **keys("servers", v.string_list, "servers"),
    **keys("hosts", dns_hosts, "hosts"),
    **keys("timeout", v.duration(), "timeout"),
}


def build_dns(node: Node, what: str) -> DNSConfig:
    cfg = DNSConfig(source=node.source)
    read_keys(node, what, DNS_KEYS, cfg)
    return cfg


SMARTHOST_KEYS: Table = {
    **keys("hosts", v.string_list, "host", "hosts"),
    **keys("port", v.integer(1), "port"),
    **keys("username", v.optional_text, "username"),
    **keys("password", v.optional_text, "password"),
}


def build_smarthost(node: Node, what: str) -> SmarthostConfig:
    """``smarthost: {host: relay.example.net:587, username: …, password: …}``."""
    cfg = SmarthostConfig(source=node.source)
    read_keys(node, what, SMARTHOST_KEYS, cfg)
    if not cfg.hosts:
        fail(f"{what} needs host (the relay as host[:port], e.g. host: "
             f"relay.example.net:587)", node.source)
    if cfg.port > 65535:
        fail(f"{what}.port must be 1..65535, not {cfg.port}", node.source)
    try:
        parse_host_list(cfg.hosts, cfg.port, f"{what}.host")
    except ConfigurationError as exc:
        fail(exc.message, node.source)
    if (cfg.username is None) != (cfg.password is None):
        missing = "password" if cfg.password is None else "username"
        fail(f"{what} has {'username' if missing == 'password' else 'password'} but no "
             f"{missing}; give both (or neither, for a relay that needs no AUTH)",
             node.source)
    return cfg


LOGGING_KEYS: Table = {
    **keys("level", v.log_level, "level"),
    **keys("file", v.optional_text, "file"),
    **keys("format", v.log_format, "format"),
}


def build_logging(node: Node, what: str) -> LoggingConfig:
    cfg = LoggingConfig(source=node.source)
    read_keys(node, what, LOGGING_KEYS, cfg)
    return cfg


AUTH_THROTTLE_KEYS: Table = {
    **keys("max_failures", v.integer(1), "maxFailures", "max_failures"),
    **keys("window", v.duration(), "window"),
    **keys("block", v.duration(), "blockTime", "block"),
    **keys("max_concurrent_per_ip", v.integer(1), "maxConcurrentPerIP",
           "max_concurrent_per_ip"),
    **keys("ipv6_prefix", v.integer(1), "ipv6Prefix", "ipv6_prefix"),
    **keys("max_tracked", v.integer(1), "maxTracked", "max_tracked"),
}


def build_auth_throttle(node: Node, what: str) -> AuthThrottleConfig:
    cfg = AuthThrottleConfig(source=node.source)
    read_keys(node, what, AUTH_THROTTLE_KEYS, cfg)
    if cfg.ipv6_prefix > 128:
        fail(f"{what}.ipv6Prefix must be 128 or less, not {cfg.ipv6_prefix}", node.source)
    return cfg


TLS_POLICY_KEYS: Table = {
    **keys("mta_sts", v.boolean, "mtaSts", "mta_sts"),
    **keys("dane", v.boolean, "dane"),
    **keys("tls_reports", v.boolean, "tlsReports", "tls_reports"),
    **keys("ca_file", v.file_path, "caFile", "ca_file"),
    **keys("fetch_timeout", v.duration(), "fetchTimeout", "fetch_timeout"),
}


def build_tls_policy(node: Node, what: str) -> TLSPolicyConfig:
    cfg = TLSPolicyConfig(source=node.source)
    read_keys(node, what, TLS_POLICY_KEYS, cfg)
    return cfg


@dataclass
class MetricsConfig:
    """The Prometheus endpoint (``metrics:``); kept in ``ServerConfig.extra["metrics"]``."""

    listen: str | None = doc("Twisted endpoint string of the /metrics HTTP listener, "
                             "e.g. tcp:9464:interface=127.0.0.1; none (the default) "
                             "means no endpoint", default=None)
    source: str | None = None


METRICS_KEYS: Table = {
    **keys("listen", v.optional_text, "listen"),
}


def build_metrics(node: Node, what: str) -> MetricsConfig:
    cfg = MetricsConfig(source=node.source)
    read_keys(node, what, METRICS_KEYS, cfg)
    return cfg


# -- listeners ----------------------------------------------------------------------
TLS_KEYS: Table = {
    **keys("certificate", v.file_path, "certificate", "certificates"),
    **keys("private_key", v.file_path, "privateKey", "private_key"),
    **keys("minimum_version", v.tls_version, "minimumVersion", "minimum_version"),
}
LISTENER_FLAGS = ("socketTLS", "startTLS")  # listener settings James writes in <tls>


def build_tls(node: Node, what: str) -> tuple[TLSConfig, dict[str, Node]]:
    """The TLS block, plus James's socketTLS/startTLS flags found inside it."""
    cfg = TLSConfig(source=node.source)
    flags = read_keys(node, what, TLS_KEYS, cfg, special=LISTENER_FLAGS)
    if bool(cfg.certificate) != bool(cfg.private_key):
        missing = "privateKey" if cfg.certificate else "certificate"
        fail(f"{what} needs both certificate and privateKey (PEM files); add {missing}",
             node.source)
    return cfg, flags


COMMON_LISTENER_KEYS: Table = {
    **keys("name", v.text, "name"),
    **keys("listen", v.text, "listen"),
    **keys("implicit_tls", v.boolean, "implicitTLS", "implicit_tls"),
    **keys("require_ssl", v.boolean, "requireSSL", "require_ssl", "auth.requireSSL"),
    **keys("connection_timeout", v.timeout(), "connectiontimeout", "connectionTimeout",
           "connection_timeout"),
    **keys("connection_limit", v.integer(0), "connectionLimit", "connection_limit"),
    **keys("connection_limit_per_ip", v.integer(0), "connectionLimitPerIP",
           "connection_limit_per_ip"),
    **keys("auth_failure_delay", v.duration(allow_zero=True), "authFailureDelay",
           "auth_failure_delay"),
}
SMTP_KEYS: Table = {
    **COMMON_LISTENER_KEYS,
    **keys("starttls", v.boolean, "startTLS", "starttls"),
    **keys("helo_name", v.optional_text, "helloName", "heloName", "helo_name"),
    **keys("greeting", v.optional_text, "smtpGreeting", "greeting"),
    **keys("auth_required", v.auth_required, "authRequired", "auth_required"),
    **keys("auth_before_mail", v.boolean, "authBeforeMail", "auth_before_mail"),
    **keys("verify_identity", v.verify_identity, "verifyIdentity", "verify_identity"),
    **keys("authorized_addresses", v.network_list,
           "authorizedAddresses", "authorized_addresses"),
    # A bare number is KiB in every spelling (James's unit), with a warning.
    **keys("max_message_size", v.message_size, "maxmessagesize", "maxMessageSize",
           "max_message_size"),
    **keys("max_header_size", v.size(), "maxHeaderSize", "max_header_size"),
    **keys("max_recipients", v.integer(1), "maxRcpt", "maxRecipients", "max_recipients"),
    **keys("helo_required", v.boolean, "heloEhloEnforcement", "heloRequired",
           "helo_required"),
    **keys("enable_vrfy", v.boolean, "enableVrfy", "enable_vrfy"),
    **keys("reject_unknown_local_users", v.boolean, "rejectUnknownLocalUsers",
           "reject_unknown_local_users"),
    **keys("dmarc_reject", v.boolean, "dmarcReject", "dmarc_reject"),
    **keys("arc_trusted_sealers", v.string_list, "arcTrustedSealers", "arc_trusted_sealers"),
}
POP3_KEYS: Table = dict(COMMON_LISTENER_KEYS)
# James's imapserver.xml names: enableIdle offers IDLE, idleTimeInterval (in
# idleTimeIntervalUnit, SECONDS by default) is the "still here" heartbeat during IDLE,
# plainAuthDisallowed means requireSSL, literalSizeLimit bounds APPEND.
IMAP_KEYS: Table = {
    **COMMON_LISTENER_KEYS,
    **keys("require_ssl", v.boolean, "requireSSL", "require_ssl", "auth.requireSSL",
           "plainAuthDisallowed"),
    **keys("enable_idle", v.boolean, "enableIdle", "enable_idle"),
    **keys("idle_keepalive", v.duration(allow_zero=True), "idleTimeInterval",
           "idle_keepalive"),
    **keys("idle_keepalive_unit", v.choice({"seconds": "seconds"},
                                           "SECONDS (write the interval in seconds)"),
           "idleTimeIntervalUnit"),
    **keys("max_message_size", v.message_size, "literalSizeLimit", "maxMessageSize",
           "max_message_size"),
}
LISTENER_SPECIAL = ("bind", "port", "enabled", "auth", "tls")
AUTH_KEYS: Table = {
    **keys("require_ssl", v.boolean, "requireSSL", "require_ssl"),
    **keys("auth_required", v.auth_announce, "announce"),       # James 3's auth block
    **keys("auth_before_mail", v.boolean, "required"),
}
TLS_FLAG_KEYS: Table = {**keys("implicit_tls", v.boolean, "socketTLS"),
                        **keys("starttls", v.boolean, "startTLS")}


def build_listener(node: Node, what: str, cls, table: Table, name: str):
    """One SMTP or POP3 listener, or None when ``enabled`` is false."""
    cfg = cls(source=node.source)
    cfg.name = name
    seen: dict[str, str] = {}
    rest = read_keys(node, what, table, cfg, special=LISTENER_SPECIAL, seen=seen)
    if "enabled" in rest and not v.boolean(rest["enabled"], f"{what}.enabled"):
        return None
    if "auth" in rest:   # POP3 has no announce/required: they are unknown keys there
        auth_keys = {k: fc for k, fc in AUTH_KEYS.items() if hasattr(cfg, fc[0])}
        read_keys(rest["auth"], f"{what}.auth", auth_keys, cfg, seen=seen)
    if "tls" in rest:
        tls_node = rest["tls"]
        cfg.tls, flags = build_tls(tls_node, f"{what}.tls")
        if not hasattr(cfg, "starttls") and "startTLS" in flags:
            # POP3 offers STLS whenever a certificate is configured.
            v.boolean(flags.pop("startTLS"), f"{what}.tls.startTLS")
        read_keys(Node(flags, tls_node.source), f"{what}.tls", TLS_FLAG_KEYS, cfg,
                  seen=seen)
    _listen_from_port(cfg, rest, what, node, "listen" in seen)
    if (cfg.implicit_tls or cfg.require_ssl) and cfg.tls is None:
        why = "implicitTLS" if cfg.implicit_tls else "requireSSL"
        fail(f"{what} sets {why} but has no tls block; add tls with certificate and "
             f"privateKey", node.source)
    return cfg


def _listen_from_port(cfg, rest: dict[str, Node], what: str, node: Node,
                      has_listen: bool) -> None:
    """James's ``bind`` + ``port`` (or James 3's ``bind`` of ``host:port``) become the
    endpoint ``tcp:PORT:interface=BIND``."""
    port, bind = rest.get("port"), rest.get("bind")
    if port is None and bind is None:
        if not has_listen:
            fail(f"{what} needs listen (a Twisted endpoint such as tcp:25) or port",
                 node.source)
        return
    if has_listen:
        fail(f"{what} has both listen and port/bind; keep listen (an endpoint string) "
             f"or port/bind", (port or bind).source)
    address = v.text(bind, f"{what}.bind") if bind is not None else None
    if port is None:
        host, sep, number_text = address.rpartition(":")
        if not sep or not number_text.isdigit() or (":" in host and "]" not in host):
            fail(f"{what}.bind needs a port: write port next to it, or bind: "
                 f"0.0.0.0:25", bind.source)
        address, port = host.strip("[]"), Node(number_text, bind.source)
    number = v.integer(0)(port, f"{what}.port")
    if number > 65535:
        fail(f"{what}.port must be 0..65535, not {number}", port.source)
    if address in (None, "0.0.0.0", "*"):
        cfg.listen = f"tcp:{number}"
    elif ":" in address:
        cfg.listen = f"tcp6:{number}:interface={address.replace(':', chr(92) + ':')}"
    else:
        cfg.listen = f"tcp:{number}:interface={address}"


def build_listeners(kind: str, cls, table: Table) -> Callable[[Node, str], list]:
    """A list of listeners (or one); errors name James's element, e.g. smtpserver[1]."""
    def convert(node: Node, what: str) -> list:
        items = node.value if node.is_list else [node]
        out = []
        for index, item in enumerate(items):
            name = kind if index == 0 else f"{kind}-{index + 1}"
            label = f"{kind}server" if len(items) == 1 else f"{kind}server[{index}]"
            cfg = attempt(lambda: build_listener(item, label, cls, table, name), label)
            if cfg is not None:
                out.append(cfg)
        return out
    return convert


# -- the spool manager and its processors ------------------------------------------------
def parse_match(expression: str, source: str, what: str) -> MatcherSpec:
    """``Name=condition`` split at the first '='."""
    name, sep, condition = expression.partition("=")
    name = name.strip()
    if not name:
        fail(f"{what} {expression!r} has no matcher name before '='", source)
    return MatcherSpec(name=name, condition=condition.strip() if sep else None, source=source)


MAILET_KEYS: Table = {
    **keys("mailet", v.written_text, "class"),
    **keys("on_mailet_exception", v.policy("error", "ignore", "propagate"),
           "onMailetException", "on_mailet_exception"),
    **keys("on_match_exception", v.policy("error", "nomatch", "matchall", "propagate"),
           "onMatchException", "on_match_exception"),
    **keys("parameters", lambda n, w: parameters(n, w), "parameters"),
}


def parameters(node: Node, what: str) -> dict[str, str]:
    """Init parameters as the text written (lists comma-joined), as James reads XML."""
    out = {}
    for name, child in mapping(node, what).items():
        items = child.value if child.is_list else [child]
        for item in items:
            v.scalar(item, f"{what}.{name}")
        out[name] = ",".join(item.text.strip() for item in items)
    return out


def build_mailet(node: Node, what: str) -> MailetSpec:
    """``{match|notmatch: Matcher=cond, class: Mailet, parameters: {...}, on…Exception}``."""
    spec = MailetSpec(mailet=None, source=node.source)
    rest = read_keys(node, what, MAILET_KEYS, spec, special=("match", "notmatch"))
    if not spec.mailet:
        fail(f"{what} needs class (the mailet to run, e.g. class: LocalDelivery)",
             node.source)
    if len(rest) > 1:
        fail(f"{what} has both match and notmatch; keep one", node.source)
    for key, child in rest.items():
        spec.match = parse_match(v.written_text(child, f"{what}.{key}"), node.source,
                                 f"{what}.{key}")
        spec.notmatch = key == "notmatch"
    return spec


def build_matcher(node: Node, what: str) -> MatcherSpec:
    """A matcher expression, or a composite ``{match: Or, matchers: [...]}``."""
    if node.is_scalar:
        return parse_match(v.written_text(node, what), node.source, what)
    items = mapping(node, what)
    for name, child in items.items():
        if name not in ("match", "matchers"):
            fail(f"unknown key {name!r} in {what}{suggestion(name, ['match', 'matchers'])}; "
                 f"a matcher has match and, for And/Or/Not/Xor, matchers", child.source)
    if "match" not in items:
        fail(f"{what} needs match (e.g. match: Or)", node.source)
    spec = parse_match(v.written_text(items["match"], f"{what}.match"), node.source, what)
    if "matchers" in items:
        kids = items["matchers"]
        if not kids.is_list:
            fail(f"{what}.matchers must be a list of matchers", kids.source)
        spec.children = [build_matcher(k, f"{what}.matchers[{i}]")
                         for i, k in enumerate(kids.value)]
    return spec


def build_processor(node: Node, what: str, name: str) -> ProcessorSpec:
    proc = ProcessorSpec(name=name, source=node.source)
    items = {"mailets": node} if node.is_list else mapping(node, what)
    for key, child in items.items():
        if key == "mailets":
            if not child.is_list:
                fail(f"{what}.mailets must be a list of mailets", child.source)
            built = [attempt(lambda: build_mailet(m, f"{what}.mailets[{i}]"))
                     for i, m in enumerate(child.value)]
            proc.mailets = [m for m in built if m is not None]
        elif key == "matchers":
            named = {mname: attempt(lambda: build_matcher(m, f"{what}.matchers.{mname}"))
                     for mname, m in mapping(child, f"{what}.matchers").items()}
            proc.matchers = {k: m for k, m in named.items() if m is not None}
        else:
            fail(f"unknown key {key!r} in {what}{suggestion(key, ['mailets', 'matchers'])}; "
                 f"a processor has mailets and optional matchers", child.source)
    return proc


def build_processors(node: Node, what: str) -> dict[str, ProcessorSpec]:
    # A processor that cannot be read still exists (empty), so the checks of the
    # mailets that name it do not add errors that only follow from the first one.
    return {name: attempt(lambda: build_processor(child, f"{what}.{name}", name),
                          default=ProcessorSpec(name=name, source=child.source))
            for name, child in mapping(node, what).items()}


SPOOL_KEYS: Table = {
    **keys("threads", v.integer(1), "threads"),
    **keys("max_tries", v.integer(1), "maxTries", "max_tries"),
    **keys("error_repository", v.repository_name, "errorRepository", "error_repository"),
    **keys("max_state_changes", v.integer(1), "maxStateChanges", "max_state_changes"),
    **keys("max_mime_parts", v.integer(1), "maxMimeParts", "max_mime_parts"),
    **keys("max_mime_depth", v.integer(1), "maxMimeDepth", "max_mime_depth"),
    **keys("lease_seconds", v.duration(), "leaseTime", "lease_seconds"),
    **keys("processors", build_processors, "processors"),
}


def build_spoolmanager(node: Node, what: str) -> SpoolManagerConfig:
    cfg = SpoolManagerConfig(source=node.source)
    read_keys(node, what, SPOOL_KEYS, cfg)
    return cfg


# -- the whole file --------------------------------------------------------------------
def servernames(node: Node, what: str) -> list[str]:
    names = v.string_list(node, what)
    if not names:
        fail(f"{what} is empty; list the mail domains this server receives for, "
             f"e.g. [example.com]", node.source)
    return [check_domain(n, what, node.source) for n in names]


TOP_KEYS: Table = {
    **keys("servernames", servernames, "servernames"),
    **keys("postmaster", v.text, "postmaster"),
    **keys("storage", build_storage, "storage"),
    **keys("spoolmanager", build_spoolmanager, "spoolmanager"),
    **keys("smtpservers", build_listeners("smtp", SMTPServerConfig, SMTP_KEYS),
           "smtpservers", "smtpserver"),
    **keys("pop3servers", build_listeners("pop3", POP3ServerConfig, POP3_KEYS),
           "pop3servers", "pop3server"),
    **keys("imapservers", build_listeners("imap", IMAPServerConfig, IMAP_KEYS),
           "imapservers", "imapserver"),
    **keys("dns", build_dns, "dns"),
    **keys("smarthost", build_smarthost, "smarthost"),
    **keys("logging", build_logging, "logging"),
    **keys("tls_policy", build_tls_policy, "tlsPolicy", "tls_policy"),
    **keys("auth_throttle", build_auth_throttle, "authThrottle", "auth_throttle"),
    **keys("workers", v.workers, "workers"),
    **keys("extra", lambda n, w: mapping(n, w) and n.to_python(), "extra"),
}
# Sections kept in ServerConfig.extra under their own name, built by their function.
EXTRA_SECTIONS = {"metrics": build_metrics, "repositories": build_repositories,
                  "webadmin": build_webadmin, "webmail": build_webmail}


def build_config(root: Node, what: str = "") -> ServerConfig:
    """The ServerConfig described by ``root`` (not yet cross-checked: see validate)."""
    cfg = ServerConfig()
    # Top-level keys starting with "x-" are free: a place for YAML anchors (&tls).
    kept = {k: n for k, n in mapping(root, "the file").items() if not k.startswith("x-")}
    sections = read_keys(Node(kept, root.source), what, TOP_KEYS, cfg,
                         special=tuple(EXTRA_SECTIONS))
    for name, node in sections.items():
        cfg.extra[name] = EXTRA_SECTIONS[name](node, name)
    if "spoolmanager" not in kept:
        cfg.spoolmanager.source = root.source  # "no root processor" points at the file
    if cfg.postmaster is not None:
        cfg.postmaster = attempt(lambda: check_postmaster(
            cfg.postmaster, cfg.server_name, root.value["postmaster"].source), "postmaster")
    return cfg
