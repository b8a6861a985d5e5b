"""James 3's configuration files, read into the same tree as ``<config>``.

James 3 splits its configuration into one file per part. Each of these may be loaded
on its own (``mailet-mta check-config mailetcontainer.xml``) or together as a James
``conf/`` directory (see :func:`mailet_mta.config.loader.load_config`):

- ``mailetcontainer.xml``: ``<mailetcontainer>`` with ``<context><postmaster>``,
  ``<spooler><threads>``/``<errorRepository>`` and ``<processors>`` of
  ``<processor state="…">``; classes may be James's full names;
- ``smtpserver.xml`` / ``pop3server.xml``: ``<smtpservers>`` / ``<pop3servers>`` of
  listeners, their ``connectiontimeout`` in seconds (James 2 counted milliseconds);
- ``domainlist.xml``: ``<domainlist>`` with ``<domainnames>`` and ``<defaultDomain>``.

What James 3 offers and mailet-mta does not is refused at its line, saying what to do.
"""

from __future__ import annotations

from .james_names import short_name
from .tree import Node, fail, suggestion
from .xml_loader import (
    Element,
    _add_processor,
    _no_attrs,
    _put,
    convert_listener,
    generic,
)

JAMES3_TIMEOUT_UNIT = "s"
# James 3 listener settings about the JVM and its thread pools: nothing to set here.
LISTENER_IGNORED = ("jmxName", "connectionBacklog", "gracefulShutdown", "bossWorkerCount",
                    "ioWorkerCount", "maxExecutorCount", "addressBracketsEnforcement",
                    # imapserver.xml: Java packages, compression, and James's own
                    # parser buffers (the bounds here are the reader's, docs/SECURITY.md)
                    "imapPackages", "enableCompress", "maxLineLength", "inMemorySizeLimit")
# Java keystore details of a James 3 <tls> block, meaningless with PEM files.
KEYSTORE_DETAILS = ("keystoreType", "provider", "algorithm")
# Handlers of a James 3 <handlerchain> and the setting each stands for here.
CORE_HANDLERS = ("org.apache.james.smtpserver.CoreCmdHandlerLoader",
                 "org.apache.james.pop3server.core.CoreCmdHandlerLoader")
VALID_RCPT = "org.apache.james.smtpserver.fastfail.ValidRcptHandler"
MAX_RCPT = "org.apache.james.smtpserver.fastfail.MaxRcptHandler"
# Mailet parameters that older James 3 releases spelled differently.
PARAMETER_RENAMES = {("RemoteDelivery", "outgoingQueue"): "outgoing"}
MAILETCONTAINER_PARTS = ("context", "spooler", "processors")


def convert_mailetcontainer(root: Element) -> Node:
    """``<mailetcontainer>`` → ``postmaster`` and ``spoolmanager``."""
    _no_attrs(root, ("enableJmx",))
    out: dict[str, Node] = {}
    spool: dict[str, Node] = {}
    processors: dict[str, Node] = {}
    for child in root.children:
        if child.tag == "context":
            _no_attrs(child)
            for item in child.children:
                if item.tag != "postmaster":
                    fail(f"<context> holds <postmaster>, not <{item.tag}>", item.source)
                _put(out, "postmaster", item.scalar(), item)
        elif child.tag == "spooler":
            _no_attrs(child)
            for item in child.children:
                _put(spool, item.tag, generic(item), item)
        elif child.tag == "processors":
            _no_attrs(child)
            for proc in child.children:
                _add_processor(proc, processors)
        elif child.tag in ("mailetpackages", "matcherpackages"):
            continue  # James 3.0's package lists; full names are read without them
        else:
            fail(f"<mailetcontainer> holds {', '.join(f'<{p}>' for p in MAILETCONTAINER_PARTS)}"
                 f", not <{child.tag}>{suggestion(child.tag, MAILETCONTAINER_PARTS)}",
                 child.source)
    for proc in processors.values():
        for mailet in proc.value["mailets"].value:
            _rename_parameters(mailet)
    spool["processors"] = Node(processors, root.source)
    out["spoolmanager"] = Node(spool, root.source)
    return Node(out, root.source)


def _rename_parameters(mailet: Node) -> None:
    params = mailet.value.get("parameters")
    cls = mailet.value.get("class")
    if params is None or cls is None:
        return
    name = short_name("mailet", cls.value)
    for old in list(params.value):
        new = PARAMETER_RENAMES.get((name, old))
        if new is not None and new not in params.value:
            params.value[new] = params.value.pop(old)


def _listeners(kind: str):
    def convert(root: Element) -> Node:
        _no_attrs(root)
        items = []
        for child in root.children:
            if child.tag != f"{kind}server":
                fail(f"<{kind}servers> holds <{kind}server> elements, not <{child.tag}>",
                     child.source)
            items.append(convert_james3_listener(child, kind))
        return Node({f"{kind}servers": Node(items, root.source)}, root.source)
    return convert


def convert_james3_listener(element: Element, kind: str = "smtp") -> Node:
    """A James 3 listener: seconds for timeouts, its handler chain read as settings."""
    node = convert_listener(element, JAMES3_TIMEOUT_UNIT, skip=_skipped)
    settings = node.value
    per_ip = settings.get("connectionLimitPerIP")
    if kind in ("pop3", "imap") and per_ip is not None and per_ip.value.strip() == "0":
        del settings["connectionLimitPerIP"]   # James's "no limit": what POP3 does here
    for child in element.children:
        if child.tag == "handlerchain":
            _handler_chain(child, settings)
        elif child.tag == "tls":
            _james3_tls(child, settings)
    return node


def _james3_tls(element: Element, settings: dict[str, Node]) -> None:
    """James 3's <tls>: off → dropped; on → PEM files, the Java keystore refused."""
    if _tls_off(element):
        settings.pop("tls", None)  # James ignores a keystore it does not use
        return
    tls = settings["tls"].value
    for key in KEYSTORE_DETAILS:
        tls.pop(key, None)
    if "keystore" in tls:
        if "privateKey" not in tls:
            fail("<tls> names a Java keystore; mailet-mta reads PEM files: add "
                 "<privateKey>file://conf/private.key</privateKey> and "
                 "<certificates>file://conf/certs.pem</certificates> (openssl pkcs12 "
                 "converts a PKCS12 keystore)", element.source)
        tls.pop("keystore")
        tls.pop("secret", None)     # the keystore's password


def _skipped(child: Element) -> bool:
    return child.tag in LISTENER_IGNORED or child.tag == "handlerchain"


def _tls_off(element: Element) -> bool:
    return all(element.attrs.get(flag, "false").strip().lower() == "false"
               for flag in ("socketTLS", "startTLS"))


def _handler_chain(chain: Element, settings: dict[str, Node]) -> None:
    _no_attrs(chain, ("enableJmx", "coreHandlersPackage"))
    for handler in chain.children:
        _no_attrs(handler, ("class",))
        cls = handler.attrs.get("class", "").strip()
        if handler.tag != "handler" or not cls:
            fail('<handlerchain> holds <handler class="…"> elements', handler.source)
        if cls in CORE_HANDLERS:
            continue
        if cls == VALID_RCPT:
            _put(settings, "rejectUnknownLocalUsers", Node("true", handler.source), handler)
        elif cls == MAX_RCPT:
            for item in handler.children:
                if item.tag != "maxRcpt":
                    fail(f"MaxRcptHandler takes <maxRcpt>, not <{item.tag}>", item.source)
                _put(settings, "maxRcpt", item.scalar(), item)
        else:
            fail(f'<handler class="{cls}">: mailet-mta has no such SMTP/POP3 handler; '
                 f"remove it (its policy may exist as a setting: see "
                 f"docs/configuration.md)", handler.source)


def convert_domainlist(root: Element) -> Node:
    """``<domainlist>``: ``<defaultDomain>`` first, then each ``<domainname>``."""
    _no_attrs(root, ("class",))
    names: list[Node] = []
    default: Node | None = None
    for child in root.children:
        _no_attrs(child)
        if child.tag == "domainnames":
            for item in child.children:
                if item.tag != "domainname":
                    fail(f"<domainnames> holds <domainname> elements, not <{item.tag}>",
                         item.source)
                names.append(item.scalar())
        elif child.tag == "defaultDomain":
            default = child.scalar()
        elif child.tag in ("autodetect", "autodetectIP"):
            if child.text.strip().lower() not in ("false", "no", "0"):
                fail(f"<{child.tag}>true</{child.tag}> is not supported: set it to false "
                     f"and list each mail domain in <domainnames>", child.source)
        else:
            fail(f"<domainlist> holds <domainnames>, <defaultDomain>, <autodetect> and "
                 f"<autodetectIP>, not <{child.tag}>", child.source)
    if default is not None:   # the default domain is the server's first name
        names = [default] + [n for n in names if n.value != default.value]
    if not names:
        fail("<domainlist> names no domain: add <domainnames><domainname>example.com"
             "</domainname></domainnames>", root.source)
    return Node({"servernames": Node(names, root.source)}, root.source)


ROOTS = {
    "mailetcontainer": convert_mailetcontainer,
    "smtpservers": _listeners("smtp"),
    "pop3servers": _listeners("pop3"),
    "imapservers": _listeners("imap"),
    "domainlist": convert_domainlist,
}
