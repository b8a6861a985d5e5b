"""Read a James-style ``config.xml`` into the same :class:`~.tree.Node` tree as YAML.

The dialect is James 2's ``config.xml``: ``<James>`` holds ``postmaster`` and
``servernames``; ``<spoolmanager>`` holds ``<processor name=…>`` elements of
``<mailet match="Matcher=cond" class="Mailet">`` pairs whose other child elements are
init parameters, and named composite ``<matcher>`` definitions; ``<smtpserver>`` and
``<pop3server>`` (several of each allowed) take their settings directly or inside
``<handler>``. ``<storage>``, ``<dns>`` and ``<logging>`` mirror the YAML keys.
Bare numbers keep James 2's units: ``connectiontimeout`` in milliseconds,
``maxmessagesize`` in KiB (see JAMES_UNITS). James 3's own files (``<mailetcontainer>``,
``<smtpservers>``, ``<pop3servers>``, ``<domainlist>``) are read by :mod:`.james3_xml`.

Parsing goes through defusedxml's SAX reader so entity declarations (billion laughs)
and external entities are refused; the SAX locator gives each element its line.
"""

from __future__ import annotations

import re
import xml.sax
import xml.sax.handler

import defusedxml
import defusedxml.sax

from .tree import Node, fail, suggestion, warn

# James 2 blocks that have no meaning here: named so the error says what to do.
JAMES2_BLOCKS = {
    "dnsserver": "write <dns><servers><server>…</server></servers></dns> instead",
    "remotemanager": "use the mailet-mta command line instead",
    "mailstore": "use <storage><dataDir>…</dataDir></storage> instead",
    "users-store": "users live in the database; use mailet-mta users add",
    "database-connections": "use <storage><url>…</url></storage> instead",
}
JAMES2_IGNORABLE = ("objectstore", "connections", "sockets", "thread-manager",
                    "spoolrepository", "nntpserver", "nntp-repository", "fetchpop",
                    "fetchmail", "imapserver", "serviceManager", "usernames",
                    "inboxRepository", "mailetpackages", "matcherpackages")
MAILET_CONTROL = ("onMailetException", "onMatchException")
# Listener keys whose bare numbers James reads in its own unit. The XML reader writes
# the unit out, so the builder reads every format the same way. The timeout unit is
# the dialect's: James 2's config.xml counts milliseconds, James 3's smtpserver.xml
# and pop3server.xml count seconds.
JAMES_UNITS = {"connectiontimeout": "timeout", "connectionTimeout": "timeout",
               "maxmessagesize": "k", "maxMessageSize": "k"}
JAMES2_TIMEOUT_UNIT = "ms"
_ENCODING_RE = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*)(['\"])[^'\"]*\2")


MAX_DEPTH = 64     # element nesting; deeper documents would exhaust the Python stack


class Element:
    """A parsed XML element: tag, attributes, children, text and line."""

    __slots__ = ("tag", "attrs", "children", "text", "source")

    def __init__(self, tag: str, attrs: dict[str, str], source: str):
        self.tag, self.attrs, self.source = tag, attrs, source
        self.children: list[Element] = []
        self.text = ""

    def scalar(self) -> Node:
        if self.children:
            fail(f"<{self.tag}> must hold text, not elements "
                 f"(found <{self.children[0].tag}>)", self.children[0].source)
        return Node(self.text.strip(), self.source)


class _TreeBuilder(xml.sax.handler.ContentHandler):
    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.locator = None
        self.stack: list[Element] = []
        self.root: Element | None = None

    def setDocumentLocator(self, locator):
        self.locator = locator

    def line(self) -> str:
        return f"{self.name}:{self.locator.getLineNumber() if self.locator else '?'}"

    def startElement(self, name, attrs):
        if len(self.stack) >= MAX_DEPTH:
            fail(f"elements nest more than {MAX_DEPTH} levels deep; a configuration "
                 f"needs fewer than 10 — close the elements that are left open",
                 self.line())
        element = Element(name, {k: attrs[k] for k in attrs.getNames()}, self.line())
        if self.stack:
            self.stack[-1].children.append(element)
        else:
            self.root = element
        self.stack.append(element)

    def endElement(self, name):
        self.stack.pop()

    def characters(self, content):
        if self.stack:
            self.stack[-1].text += content


def parse_xml(data: bytes | str, name: str) -> Node:
    """The document's tree; refused entities and syntax errors name the line."""
    if isinstance(data, str):
        data = _ENCODING_RE.sub(rb"\1\2utf-8\2", data.encode("utf-8"), count=1)
    builder = _TreeBuilder(name)
    try:
        defusedxml.sax.parseString(data, builder, forbid_dtd=False, forbid_entities=True,
                                   forbid_external=True)
    except defusedxml.EntitiesForbidden as exc:
        fail(f"XML entity declarations are refused (<!ENTITY {exc.name}>): mailet-mta "
             f"does not expand entities; remove the <!DOCTYPE …> block and write the "
             f"content out", builder.line())
    except defusedxml.DefusedXmlException as exc:
        fail(f"XML refused: {exc}; remove the <!DOCTYPE …> block", builder.line())
    except xml.sax.SAXParseException as exc:
        fail(f"XML syntax error: {exc.getMessage()}; fix the XML near this line",
             f"{name}:{exc.getLineNumber()}")
    from .james3_xml import ROOTS  # James 3's files, read with this module's parts

    found = builder.root.tag if builder.root is not None else "nothing"
    if found == "config":
        return convert_config(builder.root)
    if found in ROOTS:
        return ROOTS[found](builder.root)
    fail(f"the root element must be <config> (or one of James 3's "
         f"{', '.join(f'<{r}>' for r in ROOTS)}), not <{found}>", f"{name}:1")


def _no_attrs(element: Element, allowed: tuple[str, ...] = ()) -> None:
    for attr in element.attrs:
        if attr not in allowed:
            hint = suggestion(attr, allowed)
            fail(f"<{element.tag}> has no attribute {attr!r}{hint}"
                 + (f"; allowed: {', '.join(allowed)}" if allowed else ""), element.source)


def _put(out: dict[str, Node], key: str, node: Node, element: Element) -> None:
    if key in out:
        fail(f"<{element.tag}> is written twice here (first at {out[key].source}); "
             f"keep one", element.source)
    out[key] = node


def generic(element: Element) -> Node:
    """Attributes and child elements as keys; an element with neither is its text."""
    if not element.children and not element.attrs:
        return element.scalar()
    out: dict[str, Node] = {k: Node(val, element.source) for k, val in element.attrs.items()}
    for child in element.children:
        _put(out, child.tag, generic(child), child)
    return Node(out, element.source)


def convert_config(root: Element) -> Node:
    _no_attrs(root)
    out: dict[str, Node] = {}
    listeners: dict[str, list[Node]] = {"smtpservers": [], "pop3servers": [],
                                        "imapservers": []}
    for child in root.children:
        tag = child.tag
        if tag == "James":
            _no_attrs(child)
            for sub in child.children:
                _top_level(sub, out, listeners)
        else:
            _top_level(child, out, listeners)
    for key, items in listeners.items():
        if items:
            out[key] = Node(items, items[0].source)
    return Node(out, root.source)


def _top_level(element: Element, out: dict[str, Node], listeners) -> None:
    tag = element.tag
    if tag == "smtpserver":
        listeners["smtpservers"].append(convert_listener(element))
    elif tag == "pop3server":
        listeners["pop3servers"].append(convert_listener(element))
    elif tag == "imapserver":
        listeners["imapservers"].append(convert_listener(element))
    elif tag == "servernames":
        _put(out, tag, convert_servernames(element), element)
    elif tag == "spoolmanager":
        _put(out, tag, convert_spoolmanager(element), element)
    elif tag == "dns":
        _put(out, tag, convert_dns(element), element)
    elif tag in JAMES2_BLOCKS:
        fail(f"<{tag}> is a James 2 block mailet-mta does not use: {JAMES2_BLOCKS[tag]}",
             element.source)
    elif tag in JAMES2_IGNORABLE:
        fail(f"<{tag}> is a James 2 setting mailet-mta does not use; delete it",
             element.source)
    else:
        _put(out, tag, generic(element), element)


def convert_servernames(element: Element) -> Node:
    for attr in ("autodetect", "autodetectIP"):
        if element.attrs.get(attr, "false").strip().lower() not in ("false", "no", "0"):
            fail(f"<servernames {attr}=\"true\"> is not supported: set {attr}=\"false\" "
                 f"and list each mail domain in a <servername> element", element.source)
    _no_attrs(element, ("autodetect", "autodetectIP"))
    names = []
    for child in element.children:
        if child.tag != "servername":
            fail(f"<servernames> holds <servername> elements, not <{child.tag}>",
                 child.source)
        _no_attrs(child)
        names.append(child.scalar())
    return Node(names, element.source)


def convert_listener(element: Element, timeout_unit: str = JAMES2_TIMEOUT_UNIT,
                     skip=lambda child: False) -> Node:
    """``<smtpserver>``/``<pop3server>``: attributes, children and ``<handler>`` merged.

    ``skip(child)`` is true for children a dialect reads elsewhere (James 3's
    ``<handlerchain>``).
    """
    _no_attrs(element, ("enabled", "name"))
    out: dict[str, Node] = {k: Node(val, element.source) for k, val in element.attrs.items()}
    children = []
    for child in element.children:
        if child.tag == "handler":
            _no_attrs(child)
            children.extend(child.children)
        else:
            children.append(child)
    for child in children:
        if skip(child):
            continue
        if child.tag in JAMES_UNITS:
            _put(out, child.tag, james_unit(child, timeout_unit), child)
        elif child.tag == "helloName":
            _no_attrs(child, ("autodetect",))
            if child.attrs.get("autodetect", "false").strip().lower() == "true":
                continue  # the first servername, as when helloName is absent
            _put(out, child.tag, child.scalar(), child)
        elif child.tag == "tls":
            _no_attrs(child, ("socketTLS", "startTLS"))
            _put(out, child.tag, generic(child), child)
        else:
            _put(out, child.tag, generic(child), child)
    return Node(out, element.source)


def james_unit(element: Element, timeout_unit: str) -> Node:
    """A bare number in James's unit for this key, written out (``360000`` → ``360000ms``)."""
    node = element.scalar()
    _no_attrs(element)
    written = node.value
    if not written.replace(".", "", 1).isdigit():
        return node
    kind = JAMES_UNITS[element.tag]
    unit = timeout_unit if kind == "timeout" else kind
    if kind == "timeout" and unit == "ms" and 0 < float(written) < 1000:
        warn(f"<{element.tag}>{written}</{element.tag}> is read as {written} "
             f"milliseconds, as James 2's config.xml counts them; if you meant seconds "
             f"write {written}s", element.source)
    return Node(f"{written}{unit}", node.source)


def convert_dns(element: Element) -> Node:
    _no_attrs(element)
    out: dict[str, Node] = {}
    servers: list[Node] = []
    for child in element.children:
        if child.tag in ("server", "servers"):
            items = child.children if child.tag == "servers" else [child]
            for item in items:
                if item.tag != "server":
                    fail(f"<servers> holds <server> elements, not <{item.tag}>",
                         item.source)
                servers.append(item.scalar())
        elif child.tag == "hosts":
            hosts: dict[str, Node] = {}
            for host in child.children:
                if host.tag != "host" or "domain" not in host.attrs:
                    fail('<hosts> holds <host domain="example.com">mx1, mx2</host> '
                         'elements', host.source)
                _no_attrs(host, ("domain",))
                _put(hosts, host.attrs["domain"], Node(host.text.strip(), host.source), host)
            _put(out, "hosts", Node(hosts, child.source), child)
        else:
            _put(out, child.tag, generic(child), child)
    if servers:
        out["servers"] = Node(servers, servers[0].source)
    return Node(out, element.source)


def convert_spoolmanager(element: Element) -> Node:
    _no_attrs(element)
    out: dict[str, Node] = {}
    processors: dict[str, Node] = {}
    for child in element.children:
        if child.tag == "processors":  # James 3 wraps the processors
            _no_attrs(child)
            for proc in child.children:
                _add_processor(proc, processors)
        elif child.tag == "processor":
            _add_processor(child, processors)
        elif child.tag in ("mailetpackages", "matcherpackages"):
            continue  # James 2's package lists: its classes are found by name here
        else:
            _put(out, child.tag, generic(child), child)
    out["processors"] = Node(processors, element.source)
    return Node(out, element.source)


def _add_processor(element: Element, processors: dict[str, Node]) -> None:
    if element.tag != "processor":
        fail(f"<processors> holds <processor> elements, not <{element.tag}>",
             element.source)
    _no_attrs(element, ("name", "state", "enableJmx"))
    name = (element.attrs.get("name") or element.attrs.get("state") or "").strip()
    if not name:
        fail('<processor> needs a name: <processor name="transport">', element.source)
    mailets: list[Node] = []
    matchers: dict[str, Node] = {}
    for child in element.children:
        if child.tag == "mailet":
            mailets.append(convert_mailet(child))
        elif child.tag == "matcher":
            _no_attrs(child, ("name", "match"))
            if not child.attrs.get("name"):
                fail('a <matcher> directly in a processor defines a composite and needs '
                     'name="…" (use it as match="…" in a mailet)', child.source)
            _put(matchers, child.attrs["name"], convert_matcher(child), child)
        else:
            fail(f"<processor> holds <mailet> and <matcher> elements, not "
                 f"<{child.tag}>{suggestion(child.tag, ['mailet', 'matcher'])}",
                 child.source)
    if name in processors:
        fail(f"processor {name!r} is defined twice (first at {processors[name].source}); "
             f"merge them", element.source)
    processors[name] = Node({"mailets": Node(mailets, element.source),
                             "matchers": Node(matchers, element.source)}, element.source)


def convert_mailet(element: Element) -> Node:
    """Attributes match/notmatch/class (and James's onMailetException/onMatchException,
    also written as child elements); other children are init parameters."""
    _no_attrs(element, ("match", "notmatch", "class", *MAILET_CONTROL))
    out: dict[str, Node] = {k: Node(val, element.source) for k, val in element.attrs.items()}
    params: dict[str, Node] = {}
    for child in element.children:
        if child.tag in MAILET_CONTROL:
            _no_attrs(child)
            _put(out, child.tag, child.scalar(), child)
            continue
        _no_attrs(child)
        value = child.scalar()
        if child.tag in params:  # repeated parameters are comma-joined, as James does
            value = Node(f"{params[child.tag].value},{value.value}", params[child.tag].source)
        params[child.tag] = value
    if params:
        out["parameters"] = Node(params, element.source)
    return Node(out, element.source)


def convert_matcher(element: Element) -> Node:
    """A composite ``<matcher match="Or">`` with nested ``<matcher match=…>`` children."""
    if "match" not in element.attrs:
        fail('<matcher> needs match="…" (e.g. match="Or")', element.source)
    out = {"match": Node(element.attrs["match"], element.source)}
    kids = []
    for child in element.children:
        if child.tag != "matcher":
            fail(f"a composite <matcher> holds <matcher> elements, not <{child.tag}>",
                 child.source)
        _no_attrs(child, ("match",))
        kids.append(convert_matcher(child))
    if kids:
        out["matchers"] = Node(kids, element.source)
    return Node(out, element.source)
