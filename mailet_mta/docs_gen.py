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

HIDDEN = {"source", "path"}


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
    "auth": ("require_ssl", "block", "James 3: `auth: {requireSSL: …}`"),
    "tls": ("tls", "block", "certificate block (see tls)"),
}

SECTIONS = [
    Section("Top level", [], ["config"], m.ServerConfig, b.TOP_KEYS,
            special={"metrics": ("extra['metrics']", "section", "the Prometheus endpoint "
                                 "(see metrics)"),
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
    Section("logging", ["logging"], ["config", "logging"], m.LoggingConfig, b.LOGGING_KEYS,
            examples={"level": "info", "format": "json",
                      "file": "/var/log/mailet-mta/mailet-mta.log"}),
    Section("metrics", ["metrics"], ["config", "metrics"], b.MetricsConfig, b.METRICS_KEYS,
            examples={"listen": "tcp:9464:interface=127.0.0.1"},
            intro="Off unless `listen` is set. Serves `/metrics` (Prometheus text format)."),
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


def _keys_by_field(table: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, (fname, _convert) in table.items():
        out.setdefault(fname, []).append(key)
    return out


def _default(f) -> str:
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
    for key, (fname, typ, doc) in section.special.items():
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
