"""The configuration ``mailet-mta init`` writes, as commented YAML and as James XML.

The server is described once (``settings`` from init, :func:`standard_pipeline`) and
rendered twice, so ``mailet-mta.yaml`` and ``config.xml`` always describe the same
server.
"""

from __future__ import annotations

import json
import re
import textwrap
from xml.sax.saxutils import escape, quoteattr

RELAY_SCHEDULE = "5*5 minutes, 3*1 hour, 3*6 hours"
# Records of refused mail, bounded (their senders were told, or the mail was refused);
# the error repository is not: it holds mail that was neither delivered nor bounced.
RETENTION = {name: ("30 days", 10000) for name in ("relay-denied", "address-error",
                                                   "rrt-error")}
SMARTHOST_YAML = (
    "# Send all outbound mail through a relay (your provider's smarthost) instead of",
    "# each domain's MX. The password stays in this file (keep it mode 0600).",
    "# smarthost:",
    "#   host: relay.example.net:587",
    "#   username: mailer",
    "#   password: change-me",
    "",
)


def standard_pipeline(remote: bool) -> dict:
    """The standard processors; without remote delivery installed, mail for other
    domains is kept in the repository ``outgoing-hold`` and nothing is bounced."""
    relay = (("All", "RemoteDelivery", {"outgoing": "outgoing", "delayTime": RELAY_SCHEDULE,
                                        "maxRetries": "11", "sendpartial": "true",
                                        "bounceProcessor": "bounces"})
             if remote else ("All", "ToRepository", {"repositoryPath": "outgoing-hold"}))
    # Bounces only to clients that proved who they are: other senders may be forged.
    trusted = {"trusted-client": ("Or", ["SMTPAuthSuccessful", "SMTPIsAuthNetwork"])}
    bounce = [("trusted-client", "Bounce", {"attachment": "heads", "passThrough": "true"})] \
        if remote else []
    processors = [
        ("root", "Every mail starts here.", {}, [
            ("All", "PostmasterAlias", {}),
            ("RelayLimit=30", "ToRepository", {"repositoryPath": "relay-limit-exceeded"}),
            ("All", "ToProcessor", {"processor": "transport"})]),
        ("transport", "Local recipients are delivered here; others are relayed only for "
         "authenticated users and authorizedAddresses.",
         {"relay-allowed": ("Or", ["SMTPAuthSuccessful", "SMTPIsAuthNetwork",
                                   "SentByMailet"])}, [
            ("All", "RemoveMimeHeader", {"name": "bcc"}),
            ("All", "RecipientRewriteTable", {"errorProcessor": "rrt-error"}),
            ("RecipientIsLocal", "ToProcessor", {"processor": "local-delivery"}),
            ("HostIsLocal", "ToProcessor", {"processor": "local-address-error",
                                             "notice": "550 5.1.1 mailbox unknown"}),
            ("relay-allowed", "ToProcessor", {"processor": "relay"}),
            ("All", "ToProcessor", {"processor": "relay-denied"})]),
        ("local-delivery", "Into the users' mailboxes (read them over POP3).", {}, [
            ("All", "LocalDelivery", {"errorProcessor": "local-delivery-error",
                                      "folderAttribute": "mailet_mta.folder"})]),
        ("local-delivery-error", "A mailbox refused an accepted mail (full): the sender "
         "gets a delivery report; a report itself is kept.", {},
         [("SenderIsNull", "ToRepository", {"repositoryPath": "local-delivery-error"})]
         + ([("All", "DSNBounce", {"passThrough": "false"})] if remote
            else [("All", "ToRepository", {"repositoryPath": "local-delivery-error"})])),
        ("relay", "To other domains: the outgoing queue retries on this schedule."
         if remote else "Remote delivery is not installed: relayed mail is kept.", {},
         [relay]),
        ("local-address-error", "Unknown local users (refused at RCPT; bounced only to "
         "clients that logged in or are in authorizedAddresses).",
         trusted if remote else {}, bounce + [
            ("All", "ToRepository", {"repositoryPath": "address-error"})]),
        ("relay-denied", "Remote recipients from clients that may not relay: never "
         "bounced (their sender may be forged), kept.", {},
         [("All", "ToRepository", {"repositoryPath": "relay-denied"})]),
        ("rrt-error", "Address rewriting errors.", trusted if remote else {},
         ([("trusted-client", "Bounce", {"passThrough": "true"})] if remote else [])
         + [("All", "ToRepository", {"repositoryPath": "rrt-error"})]),
        ("bounces", "Delivery status notifications for mail that could not be delivered.",
         {}, [("All", "DSNBounce", {"passThrough": "false"})] if remote
         else [("All", "ToRepository", {"repositoryPath": "bounces"})]),
        ("error", "Mails whose processing failed: inspect with mailet-mta repository.",
         {}, [("All", "ToRepository", {"repositoryPath": "error"})]),
    ]
    return {"remote": remote, "processors": processors}


def listeners(settings: dict) -> list[dict]:
    """The SMTP, POP3 and IMAP listeners, each with its comment."""
    ports, production = settings["ports"], settings["production"]
    relay_nets = ["127.0.0.0/8", "::1"]
    common = {"tls": True}
    return [
        {"kind": "smtp", "name": "smtp", "port": ports["smtp"], **common,
         "comment": "Mail from other servers for your domain; relaying only for logged-in "
                    "users and authorizedAddresses. STARTTLS is offered.",
         "keys": {"helloName": settings["hostname"], "authRequired": "true",
                  "requireSSL": "true" if production else "false",
                  "verifyIdentity": "strict", "authorizedAddresses": relay_nets,
                  "maxmessagesize": "50m"}},
        {"kind": "smtp", "name": "submission", "port": ports["submission"], **common,
         "comment": "Submission (RFC 6409): your users' mail programs log in first.",
         "keys": {"helloName": settings["hostname"], "authRequired": "true",
                  "authBeforeMail": "true",
                  "requireSSL": "true" if production else "false",
                  "verifyIdentity": "strict", "authorizedAddresses": [],
                  "maxmessagesize": "50m"}},
        {"kind": "smtp", "name": "submissions", "port": ports["submissions"], **common,
         "comment": "Submission over implicit TLS (RFC 8314).",
         "keys": {"implicitTLS": "true", "helloName": settings["hostname"],
                  "authRequired": "true", "authBeforeMail": "true",
                  "verifyIdentity": "strict", "authorizedAddresses": [],
                  "maxmessagesize": "50m"}},
        {"kind": "pop3", "name": "pop3", "port": ports["pop3"], **common,
         "comment": "POP3 with STLS" + ("; login only after STLS." if production else
                                         "; plain login allowed on this test setup "
                                         "(set requireSSL: true in production)."),
         "keys": {"requireSSL": "true" if production else "false"}},
        {"kind": "pop3", "name": "pop3s", "port": ports["pop3s"], **common,
         "comment": "POP3 over implicit TLS.", "keys": {"implicitTLS": "true"}},
        {"kind": "imap", "name": "imap", "port": ports["imap"], **common,
         "comment": "IMAP with STARTTLS" + ("; login only after STARTTLS (LOGINDISABLED "
                                            "before)." if production else
                                            "; plain login allowed on this test setup "
                                            "(set requireSSL: true in production)."),
         "keys": {"requireSSL": "true" if production else "false"}},
        {"kind": "imap", "name": "imaps", "port": ports["imaps"], **common,
         "comment": "IMAP over implicit TLS.", "keys": {"implicitTLS": "true"}},
    ]


def _endpoint(settings: dict, port: int) -> str:
    interface = settings["interface"]
    return f"tcp:{port}" + (f":interface={interface}" if interface else "")


# -- YAML -------------------------------------------------------------------------------
def _y(value) -> str:
    """A YAML scalar or flow list (JSON strings are YAML strings)."""
    if isinstance(value, list):
        return "[" + ", ".join(_y(v) for v in value) + "]"
    text = str(value)
    if text in ("true", "false") or (_PLAIN.fullmatch(text) and text.lower() not in _WORDS):
        return text
    return json.dumps(text)


_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./+@=-]*")
_WORDS = {"yes", "no", "on", "off", "null", "y", "n", "~"}


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, 86 - len(indent))]


def render_yaml(settings: dict) -> str:
    s = settings
    lines = [
        f"# mailet-mta for {s['domain']} — written by `mailet-mta init`.",
        "#",
        f"# Check:  mailet-mta check-config {s['config_path']}",
        "# Reload: kill -HUP <pid>   (processors, policies, certificates; listeners and",
        "#         storage need a restart)",
        "# Every key is described in docs/configuration.md.",
        "",
        "# The mail domains this server receives for (more: mailet-mta domains add).",
        f"servernames: [{_y(s['domain'])}]",
        "",
        "# Sender of bounces; postmaster@<each servername> is delivered to this address.",
        f"postmaster: {_y('postmaster@' + s['domain'])}",
        "",
        "storage:",
        "  # SQLite database and message files; or url: postgresql+psycopg://… to share",
        "  # one database between several servers.",
        f"  data_dir: {_y(s['data_dir'])}",
        "",
        "# Processes serving mail: auto is one per core on PostgreSQL and one process",
        "# on SQLite (one writer at a time: a second worker measured slower); or a",
        "# number (docs/operations.md, Worker processes).",
        "workers: auto",
        "",
        "logging:",
        "  level: info          # debug | info | warn | error",
        "  format: text         # text | json (one JSON object per line)",
        "  # file: /var/log/mailet-mta/mailet-mta.log   (default: standard output)",
        "",
        "# Records of refused mail (mailet-mta repository list NAME), kept this long at",
        "# most; repositories not named here (error, …) are kept until purged by hand.",
        "repositories:",
        "  purgeInterval: 1 hour",
        "  retention:",
        *[f"    {name}: {{maxAge: {age}, maxMails: {count}}}"
          for name, (age, count) in RETENTION.items()],
        "",
        "# Prometheus metrics (off by default); keep it on loopback or behind a firewall.",
        "# metrics:",
        "#   listen: tcp:9464:interface=127.0.0.1",
        "",
        *SMARTHOST_YAML,
        "# The certificate every listener uses for STARTTLS / STLS / implicit TLS.",
        "x-tls: &tls",
        f"  certificate: {_y(s['certificate'])}",
        f"  privateKey: {_y(s['private_key'])}",
        "",
    ]
    for kind in ("smtp", "pop3", "imap"):
        lines.append(f"{kind}servers:")
        for item in (i for i in listeners(s) if i["kind"] == kind):
            lines += _comment(item["comment"], "  ")
            lines.append(f"  - name: {item['name']}")
            lines.append(f"    listen: {_endpoint(s, item['port'])}")
            for key, value in item["keys"].items():
                lines.append(f"    {key}: {_y(value)}")
            lines.append("    tls: *tls")
        lines.append("")
    lines += [
        "# Every mail runs through these processors, starting at root: each entry is a",
        "# matcher/mailet pair (James semantics). See docs/writing-mailets.md.",
        "spoolmanager:",
        "  processors:",
    ]
    for name, comment, matchers, mailets in s["pipeline"]["processors"]:
        lines += _comment(comment, "    ")
        lines.append(f"    {name}:")
        if matchers:
            lines.append("      matchers:")
            for mname, (composite, operands) in matchers.items():
                lines.append(f"        {mname}:")
                lines.append(f"          match: {composite}")
                lines.append(f"          matchers: [{', '.join(operands)}]")
            lines.append("      mailets:")
            indent = "        "
        else:
            lines.append("      mailets:")
            indent = "        "
        for match, cls, params in mailets:
            entry = f"{indent}- {{match: {_y(match)}, class: {cls}"
            if params:
                entry += ", parameters: {" + ", ".join(
                    f"{k}: {_y(v)}" for k, v in params.items()) + "}"
            lines.append(entry + "}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- XML --------------------------------------------------------------------------------
def render_xml(settings: dict) -> str:
    s = settings
    out = [
        '<?xml version="1.0"?>',
        f"<!-- mailet-mta for {escape(s['domain'])}, in the dialect of Apache James's",
        "     config.xml; mailet-mta.yaml next to it describes the same server. -->",
        "<config>",
        "  <James>",
        f"    <postmaster>postmaster@{escape(s['domain'])}</postmaster>",
        '    <servernames autodetect="false" autodetectIP="false">',
        f"      <servername>{escape(s['domain'])}</servername>",
        "    </servernames>",
        "  </James>",
        f"  <storage><dataDir>{escape(s['data_dir'])}</dataDir></storage>",
        "  <!-- Processes: auto is one per core on PostgreSQL, one on SQLite;",
        "       or a number. docs/operations.md, Worker processes. -->",
        "  <workers>auto</workers>",
        "  <logging><level>info</level><format>text</format></logging>",
        "  <!-- Records of refused mail, kept this long at most; others until purged. -->",
        "  <repositories>",
        "    <purgeInterval>1 hour</purgeInterval>",
        "    <retention>",
        *[f"      <{name}><maxAge>{age}</maxAge><maxMails>{count}</maxMails></{name}>"
          for name, (age, count) in RETENTION.items()],
        "    </retention>",
        "  </repositories>",
        "  <!-- All outbound mail through a relay instead of each domain's MX:",
        "  <smarthost><host>relay.example.net:587</host><username>mailer</username>",
        "    <password>change-me</password></smarthost> -->",
    ]
    tls = (f"<tls><certificate>{escape(s['certificate'])}</certificate>"
           f"<privateKey>{escape(s['private_key'])}</privateKey></tls>")
    for item in listeners(s):
        out.append(f"  <!-- {escape(item['comment'])} -->")
        out.append(f"  <{item['kind']}server name={quoteattr(item['name'])}>")
        out.append(f"    <listen>{_endpoint(s, item['port'])}</listen>")
        for key, value in item["keys"].items():
            text = ", ".join(value) if isinstance(value, list) else str(value)
            if key == "maxmessagesize":
                text = "50m"
            out.append(f"    <{key}>{escape(text)}</{key}>")
        out.append(f"    {tls}")
        out.append(f"  </{item['kind']}server>")
    out.append("  <spoolmanager>")
    for name, comment, matchers, mailets in s["pipeline"]["processors"]:
        out.append(f"    <!-- {escape(comment)} -->")
        out.append(f"    <processor name={quoteattr(name)}>")
        for mname, (composite, operands) in matchers.items():
            out.append(f"      <matcher name={quoteattr(mname)} match={quoteattr(composite)}>")
            out += [f"        <matcher match={quoteattr(o)}/>" for o in operands]
            out.append("      </matcher>")
        for match, cls, params in mailets:
            head = f"      <mailet match={quoteattr(match)} class={quoteattr(cls)}"
            if not params:
                out.append(head + "/>")
                continue
            out.append(head + ">")
            out += [f"        <{k}>{escape(str(v))}</{k}>" for k, v in params.items()]
            out.append("      </mailet>")
        out.append("    </processor>")
    out += ["  </spoolmanager>", "</config>"]
    return "\n".join(out) + "\n"
