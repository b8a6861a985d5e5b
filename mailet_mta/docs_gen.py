"""Generate ``docs/configuration.md`` from the configuration model and the key tables.

Every row comes from the code that reads the file: the dataclass fields of
:mod:`mailet_mta.config.model` (type, default, the ``doc`` text) and the key tables of
:mod:`mailet_mta.config.build` (every spelling a section accepts). Each section ends
with a YAML and an XML example built from the example values below; the tests load
both through the real loader and fail when the committed file differs from what this
module generates (``python -m mailet_mta.docs_gen > docs/configuration.md``).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field

import yaml

from .config import build as b
from .config import model as m
from .config import retention as r
from .config import webadmin as w
from .config import webmail as wm

HIDDEN = {"source", "path", "warnings"}


@dataclass
class Section:
    """One block of the file: where it sits, its model class and its key table."""

    title: str
    yaml_path: list[str]        # keys leading to it ("smtpservers[]" for list items)
    xml_path: list[str]         # elements leading to it
    cls: type
    table: dict
    special: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # key → field, type, doc
    examples: dict[str, object] = field(default_factory=dict)
    intro: str = ""
    parent: dict[str, object] = field(default_factory=dict)   # keys the parent needs


LISTENER_SPECIAL = {
    "bind": ("listen", "str", "James style: address to bind (with port)"),
    "port": ("listen", "int", "James style: port (with bind)"),
    "enabled": ("—", "bool", "false skips this listener"),
    "auth": ("require_ssl, auth_required, auth_before_mail", "block",
             "James 3: `auth: {requireSSL: …}`; SMTP also `announce` (never, always, "
             "forUnauthorizedAddresses: authRequired false, announce, true) and "
             "`required` (authBeforeMail)"),
    "tls": ("tls", "block", "certificate block (see tls)"),
}

SECTIONS = [
    Section("Top level", [], ["config"], m.ServerConfig, b.TOP_KEYS,
            special={"metrics": ("extra['metrics']", "section", "the Prometheus endpoint "
                                 "(see metrics)"),
                     "repositories": ("extra['repositories']", "section",
                                      "retention of the mail repositories (see repositories)"),
                     "webadmin": ("extra['webadmin']", "section",
                                  "the admin HTTP API (see webadmin)"),
                     "webmail": ("extra['webmail']", "section",
                                 "the users' web mail (see webmail)"),
                     "x-…": ("—", "any", "free keys for YAML anchors (&tls); ignored")},
            examples={"servernames": ["example.com", "example.net"],
                      "postmaster": "postmaster@example.com"},
            intro="In XML, `servernames` and `postmaster` may sit inside `<James>`; "
                  "`servernames` holds `<servername>` elements."),
    Section("storage", ["storage"], ["config", "storage"], m.StorageConfig, b.STORAGE_KEYS,
            examples={"url": "postgresql+psycopg://mailet@db.example.com/mailet",
                      "dataDir": "/var/lib/mailet-mta", "inlineBlobLimit": "64k",
                      "poolSize": 5}),
    Section("dns", ["dns"], ["config", "dns"], m.DNSConfig, b.DNS_KEYS,
            examples={"servers": ["192.0.2.53", "192.0.2.54:5353"],
                      "timeout": "10s"},
            intro="In XML, `servers` holds `<server>` elements and `hosts` holds "
                  '`<host domain="example.org">mx1.example.org, mx2.example.org</host>`.'),
    Section("smarthost", ["smarthost"], ["config", "smarthost"], m.SmarthostConfig,
            b.SMARTHOST_KEYS,
            examples={"host": "relay.example.net:587", "username": "mailer",
                      "password": "change-me"},
            intro="Every outbound mail goes through this relay (RemoteDelivery's "
                  "`gateway` parameters override it for that mailet). The password is "
                  "read from this file when a mail is delivered, never stored with it; "
                  "it is sent only after STARTTLS unless the relay is on loopback. See "
                  "docs/operations.md, Smarthost."),
    Section("tlsPolicy", ["tlsPolicy"], ["config", "tlsPolicy"], m.TLSPolicyConfig,
            b.TLS_POLICY_KEYS,
            examples={"mtaSts": True, "dane": False, "tlsReports": True,
                      "caFile": "/etc/ssl/certs/ca-certificates.crt", "fetchTimeout": "30s"},
            intro="How RemoteDelivery decides per destination whether a verified "
                  "certificate is required (docs/authentication.md, Outbound TLS). A "
                  "smarthost or gateway is not subject to it."),
    Section("logging", ["logging"], ["config", "logging"], m.LoggingConfig, b.LOGGING_KEYS,
            examples={"level": "info", "format": "json",
                      "file": "/var/log/mailet-mta/mailet-mta.log"}),
    Section("authThrottle", ["authThrottle"], ["config", "authThrottle"],
            m.AuthThrottleConfig, b.AUTH_THROTTLE_KEYS,
            examples={"maxFailures": 5, "window": "5 minutes", "blockTime": "5 minutes",
                      "maxConcurrentPerIP": 5, "ipv6Prefix": 64, "maxTracked": 100000},
            intro="One budget per client address for SMTP AUTH and POP3 logins, shared "
                  "by every process on the same database. Accounts are never locked."),
    Section("metrics", ["metrics"], ["config", "metrics"], b.MetricsConfig, b.METRICS_KEYS,
            examples={"listen": "tcp:9464:interface=127.0.0.1"},
            intro="Off unless `listen` is set. Serves `/metrics` (Prometheus text format)."),
    Section("repositories", ["repositories"], ["config", "repositories"],
            r.RepositoriesConfig, r.REPOSITORIES_KEYS, examples={"purgeInterval": "1 hour"},
            intro="Bounds the mail repositories (`relay-denied`, `address-error`, …) so "
                  "records of refused mail do not grow without end. Only the repositories "
                  "named under `retention` are purged; `error` holds mail that was neither "
                  "delivered nor bounced and is left to `mailet-mta repository`."),
    Section("webadmin", ["webadmin"], ["config", "webadmin"], w.WebAdminConfig,
            w.WEBADMIN_KEYS,
            examples={"enabled": True, "host": "127.0.0.1", "port": 8000,
                      "maxBodySize": "1m", "maxPageSize": 1000},
            intro="The admin HTTP API, off unless `enabled`; see "
                  "[webadmin.md](webadmin.md) for its endpoints, tokens and the mapping "
                  "from James's `webadmin.properties`. `https.enabled: true` needs a `tls` "
                  "block with `certificate` and `privateKey`."),
    Section("webmail", ["webmail"], ["config", "webmail"], wm.WebmailConfig,
            wm.WEBMAIL_KEYS,
            examples={"enabled": True, "host": "127.0.0.1", "port": 8081,
                      "maxBodySize": "35m", "sessionIdleTimeout": "30 minutes"},
            intro="The users' web mail, off unless `enabled`; see "
                  "[webmail.md](webmail.md). `https.enabled: true` needs a `tls` block; "
                  "without it the session cookie cannot be Secure, so serve it on "
                  "loopback behind a TLS proxy only."),
    Section("a repository's retention", ["repositories", "retention", "relay-denied"],
            ["config", "repositories", "retention", "relay-denied"], r.RetentionRule,
            r.RETENTION_KEYS, examples={"maxAge": "30 days", "maxMails": 10000},
            intro="One entry per repository, named by the repository; a mail goes when "
                  "it is older than `maxAge` or not among the newest `maxMails`."),
    Section("smtpservers (each SMTP listener)", ["smtpservers[]"], ["config", "smtpserver"],
            m.SMTPServerConfig, b.SMTP_KEYS,
            special=LISTENER_SPECIAL,
            examples={"name": "submission", "listen": "tcp:587", "helloName":
                      "mail.example.com", "authRequired": "true", "authBeforeMail": True,
                      "verifyIdentity": "strict", "authorizedAddresses": ["127.0.0.0/8"],
                      "maxmessagesize": "50m", "connectionLimit": 1000,
                      "connectionLimitPerIP": 20, "connectiontimeout": "5 minutes"},
            intro="A list in YAML (`smtpservers:`); in XML one `<smtpserver>` element each, "
                  "settings directly inside it or inside `<handler>`. The key names are "
                  "the same in both."),
    Section("pop3servers (each POP3 listener)", ["pop3servers[]"], ["config", "pop3server"],
            m.POP3ServerConfig, b.POP3_KEYS,
            special=LISTENER_SPECIAL,
            examples={"name": "pop3", "listen": "tcp:110", "connectionLimit": 200,
                      "connectionLimitPerIP": 20, "connectiontimeout": "10 minutes",
                      "authFailureDelay": "2s"}),
    Section("imapservers (each IMAP listener)", ["imapservers[]"], ["config", "imapserver"],
            m.IMAPServerConfig, b.IMAP_KEYS,
            special=LISTENER_SPECIAL,
            examples={"name": "imap", "listen": "tcp:143", "connectionLimit": 500,
                      "connectionLimitPerIP": 20, "connectiontimeout": "30 minutes",
                      "enableIdle": True, "idleTimeInterval": "120s",
                      "literalSizeLimit": "50m"},
            intro="James's `imapserver.xml` names: `plainAuthDisallowed` is `requireSSL` "
                  "(LOGINDISABLED before STARTTLS), `idleTimeInterval` the heartbeat "
                  "during IDLE, `literalSizeLimit` the largest APPEND. The autologout "
                  "is `connectiontimeout` (RFC 3501 asks for at least 30 minutes)."),
    Section("tls (inside a listener)", ["smtpservers[]", "tls"],
            ["config", "smtpserver", "tls"], m.TLSConfig, b.TLS_KEYS,
            special={"socketTLS": ("implicit_tls", "bool", "James: TLS from the first byte"),
                     "startTLS": ("starttls", "bool", "James: offer STARTTLS")},
            parent={"name": "submissions", "listen": "tcp:465", "implicitTLS": True},
            examples={"certificate": "/etc/mailet-mta/tls/fullchain.pem",
                      "privateKey": "/etc/mailet-mta/tls/privkey.pem",
                      "minimumVersion": "TLSv1.2"}),
    Section("spoolmanager", ["spoolmanager"], ["config", "spoolmanager"],
            m.SpoolManagerConfig, b.SPOOL_KEYS,
            examples={"threads": 16, "maxTries": 5, "errorRepository": "error"},
            intro="`processors` maps a name to a processor; in XML each is a "
                  '`<processor name="…">` element. Processors `root` and `error` are '
                  "required."),
    Section("a processor", ["spoolmanager", "processors", "NAME"],
            ["config", "spoolmanager", 'processor name="NAME"'], m.ProcessorSpec,
            {"mailets": ("mailets", None), "matchers": ("matchers", None)},
            intro="A processor is a list of mailet entries (YAML may write the list "
                  "directly), plus named composite matchers: `{match: Or, matchers: "
                  "[A, B]}`; in XML `<matcher name=\"n\" match=\"Or\"><matcher "
                  "match=\"A\"/>…</matcher>`."),
    Section("a mailet entry", ["spoolmanager", "processors", "NAME", "mailets[]"],
            ["…", "processor", "mailet"], m.MailetSpec, b.MAILET_KEYS,
            special={"match": ("match", "str", "Matcher=condition (default All)"),
                     "notmatch": ("match, notmatch", "str", "the inverse of match")},
            intro="In XML `match` and `class` are attributes of `<mailet>` and every other "
                  "child element is an init parameter."),
]


UNITS = [
    "## Units: where YAML and XML differ",
    "",
    "A number written with its unit means the same in every file: sizes `512B`, `10k`, "
    "`10M`, `10MiB`, `2g` (binary: k = 1024); durations `500ms`, `30s`, `5 minutes`, "
    "`1h`. Only a **bare number** is read in a unit that depends on where it is written:",
    "",
    "| key | YAML (any spelling) | XML `<config>` (James 2's config.xml) | XML "
    "`<smtpservers>`/`<pop3servers>` (James 3) |",
    "| --- | --- | --- | --- |",
    "| `maxmessagesize`, `maxMessageSize`, `max_message_size` | KiB, with a warning "
    "| KiB | KiB |",
    "| `connectiontimeout`, `connectionTimeout`, `connection_timeout` | seconds, with a "
    "warning | **milliseconds** (a value under 1000 warns) | seconds |",
    "| every other size / duration | octets / seconds | octets / seconds | "
    "octets / seconds |",
    "",
    "Why: the XML files are read as James reads them, so a James configuration keeps "
    "its meaning (`<connectiontimeout>360000</connectiontimeout>` from James 2 is six "
    "minutes, not 100 hours). In YAML all spellings of a key agree; where a reader "
    "coming from James could mean another unit, a bare number loads with a warning "
    "(`file:line: … has no unit and is read as …`) that `check-config` and `serve` "
    "print. Write the unit and the warning goes away. Mailet parameters keep each "
    "mailet's own units (RemoteDelivery's `delayTime` is milliseconds when bare, as in "
    "James).",
    "",
]
JAMES3 = [
    "## James 3 files",
    "",
    "Besides its own `<config>`, the XML reader takes James 3's files as they are: "
    "`mailetcontainer.xml` (`<mailetcontainer>`: `<context><postmaster>`, "
    "`<spooler><threads>`/`<errorRepository>`, `<processors>` of `<processor "
    "state=\"…\">`), `smtpserver.xml` (`<smtpservers>`), `pop3server.xml` "
    "(`<pop3servers>`), `imapserver.xml` (`<imapservers>`) and `domainlist.xml` "
    "(`<domainlist>`). Each may be checked or "
    "served alone; `--config DIR` (or `check-config DIR`) reads those of them a James "
    "`conf/` directory holds, together. Class names may be James's full names "
    "(`org.apache.james.transport.mailets.LocalDelivery`, "
    "`org.apache.james.transport.matchers.All`, "
    "`org.apache.james.mailetcontainer.impl.matchers.Or`…): they mean the standard "
    "mailet or matcher of the same short name. One mailet-mta lacks is refused at its "
    "`file:line`. In a `<handlerchain>`, `CoreCmdHandlerLoader` is implied, "
    "`ValidRcptHandler` sets `rejectUnknownLocalUsers` and `MaxRcptHandler` sets "
    "`maxRcpt`; other handlers are refused. JVM settings (`jmxName`, "
    "`connectionBacklog`, worker counts) are ignored, as is a `<tls>` block with both "
    "`socketTLS` and `startTLS` false.",
    "",
    "Every error of a file is reported in one run, one `file:line: message` per line.",
    "",
]


def _keys_by_field(table: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, (fname, _convert) in table.items():
        out.setdefault(fname, []).append(key)
    return out


def _default(f) -> str:
    if "shown_default" in f.metadata:      # a default written as the user writes it
        return f"`{f.metadata['shown_default']}`"
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(section)"
    if value is None:
        return "none"
    if value == [] or value == {}:
        return "empty"
    return f"`{_flow(value)}`"


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix(
        "\n...").removesuffix(" ...")


def _type(f) -> str:
    return str(f.type).replace("|", "or").replace("MatcherSpec", "matcher")


def section_rows(section: Section) -> list[tuple[str, ...]]:
    by_field = _keys_by_field(section.table)
    rows = []
    for f in dataclasses.fields(section.cls):
        if f.name in HIDDEN:
            continue
        keys = by_field.get(f.name, [])
        if not keys and not any(s[0] == f.name for s in section.special.values()):
            continue
        doc = f.metadata.get("doc", "")
        rows.append((", ".join(f"`{k}`" for k in keys) or "see below", _type(f),
                     _default(f), doc))
    for key, (_fname, typ, doc) in section.special.items():
        rows.append((f"`{key}`", typ, "—", doc))
    return rows


def example_data(section: Section) -> dict:
    """The section's example values nested under its path (plus its parent's)."""
    data: object = dict(section.examples)
    path = section.yaml_path
    for depth, part in reversed(list(enumerate(path))):
        data = {part.removesuffix("[]"): [data] if part.endswith("[]") else data}
        if depth == len(path) - 1 and section.parent:
            data = {**section.parent, **data}
    return data


def example_yaml(section: Section) -> str:
    return yaml.safe_dump(example_data(section), sort_keys=False).strip()


def example_xml(section: Section) -> str:
    lines: list[str] = []
    tags = section.xml_path[1:]

    def element(values: dict, depth: int) -> None:
        pad = "  " * depth
        for key, value in values.items():
            if key in ("servernames", "servers"):     # lists of elements in XML
                item = key[:-1]
                lines.append(f"{pad}<{key}>" + "".join(
                    f"<{item}>{v}</{item}>" for v in value) + f"</{key}>")
            elif isinstance(value, list):
                lines.append(f"{pad}<{key}>{', '.join(map(str, value))}</{key}>")
            else:
                lines.append(f"{pad}<{key}>{_scalar(value)}</{key}>")

    lines.append("<config>")
    for depth, tag in enumerate(tags, start=1):
        lines.append("  " * depth + f"<{tag}>")
        if depth == len(tags) - 1 and section.parent:
            element(section.parent, depth + 1)
    element(section.examples, len(tags) + 1)
    for depth, tag in reversed(list(enumerate(tags, start=1))):
        lines.append("  " * depth + f"</{tag}>")
    lines.append("</config>")
    return "\n".join(lines)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m mailet_mta.docs_gen > docs/configuration.md` from",
        "     mailet_mta/config/model.py and mailet_mta/config/build.py; a test fails when",
        "     this file is stale. Edit the model's doc texts, not this file. -->",
        "",
        "mailet-mta reads one file: YAML (`.yaml`, `.yml`) or James-style XML (`.xml`). "
        "Both describe the same model and accept the same key names: James's camelCase "
        "names first, then the model's snake_case names. Sizes take `k`/`m`/`g` "
        "suffixes; durations take `s`, `minutes`, `hours`. A key the server does not "
        "know is an error naming the file, the line and the closest known key. "
        "`mailet-mta check-config FILE` checks a file; `kill -HUP` reloads it "
        "(see [operations.md](operations.md)). Full examples: `conf/mailet-mta.yaml`, "
        "`conf/config.xml`, and the file `mailet-mta init` writes.",
        "",
        *UNITS,
        *JAMES3,
    ]
    for section in SECTIONS:
        out.append(f"## {section.title}")
        out.append("")
        where = " → ".join(section.yaml_path) or "(top level)"
        out.append(f"YAML: `{where}` · XML: `<{'> <'.join(section.xml_path)}>`")
        out.append("")
        if section.intro:
            out += [section.intro, ""]
        out.append("| key | type | default | meaning |")
        out.append("| --- | --- | --- | --- |")
        for row in section_rows(section):
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        out.append("")
        if section.examples:
            out += ["Example (YAML):", "", "```yaml", example_yaml(section), "```", "",
                    "The same in XML:", "", "```xml", example_xml(section), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
