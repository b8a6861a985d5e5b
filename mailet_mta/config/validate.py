"""Structural checks of a loaded configuration, each error at the ``file:line`` to fix.

Value checks (a domain, an address, an endpoint string) are called while a file is
read; :func:`validate_config` then checks what only the whole model shows: the required
processors, exception policies that name processors, named composite matchers, and
listeners that would collide. Whether a mailet or matcher class exists is checked when
the spool manager loads the pipeline. Every check goes through ``tree.attempt``, so one
load reports all the problems of a file.
"""

from __future__ import annotations

import ipaddress
import re

from ..address import MailAddress, MailAddressError
from .james_names import short_name
from .model import MatcherSpec, ProcessorSpec, ServerConfig
from .tree import attempt, fail, has_failed, suggestion

REQUIRED_PROCESSORS = ("root", "error")
MAILET_POLICIES = ("error", "ignore", "propagate")
MATCH_POLICIES = ("error", "nomatch", "matchall", "propagate")
# Init parameters that, by James's convention, name a processor to send mail to.
PROCESSOR_PARAMETERS = ("errorProcessor", "bounceProcessor")


def check_domain(name: str, what: str, source: str | None) -> str:
    """The lower-case ASCII form of a mail domain, or an error naming ``what``."""
    name = str(name).strip()
    if name.startswith("["):
        fail(f"{what}: {name!r} is an address literal; list domain names", source)
    try:
        return MailAddress.parse(f"postmaster@{name}").domain
    except MailAddressError as exc:
        fail(f"{what}: {name!r} is not a valid domain ({exc})", source)


_HOST_RE = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*\Z")
_WILDCARD_RE = re.compile(r"(\d{1,3}\.){0,3}\*\Z")


def check_networks(entries: list[str], what: str, source: str | None) -> list[str]:
    """James's network list: IPs, CIDR, ip/netmask, ``192.168.0.*`` or host names.

    A network written with host bits set (``192.0.2.7/0``) is refused rather than
    widened to the network it lies in: ``/0`` would silently make an open relay.
    """
    for entry in entries:
        if _WILDCARD_RE.match(entry) or _HOST_RE.match(entry):
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            fail(f"{what}: {entry!r} is not an address, network (10.0.0.0/8, "
                 f"10.0.0.0/255.0.0.0, 10.0.*) or host name", source)
        if network.network_address != ipaddress.ip_address(entry.split("/", 1)[0]):
            host = entry.split("/", 1)[0]
            fail(f"{what}: {entry!r} has host bits set, so it would mean {network} "
                 f"(write {network} for that network, or {host}/{network.max_prefixlen} "
                 f"for the one host)", source)
    return entries


def check_postmaster(value: str, server_name: str, source: str | None) -> str:
    """A full postmaster address; a bare local part gets the first servername."""
    text = value if "@" in value else f"{value}@{server_name}"
    try:
        return str(MailAddress.parse(text))
    except MailAddressError as exc:
        fail(f"postmaster {value!r} is not a mail address ({exc}); write e.g. "
             f"postmaster@example.com", source)


def check_endpoint(description: str, what: str, source: str | None) -> tuple:
    """Parse a Twisted server endpoint string; return a key that identifies the socket."""
    from twisted.internet.endpoints import serverFromString

    try:
        endpoint = serverFromString(_NoReactor(), description)
    except Exception as exc:  # noqa: BLE001 - Twisted's parsers raise ValueError, TypeError…
        fail(f"{what} {description!r} is not a valid Twisted server endpoint ({exc}); "
             f"write e.g. tcp:25 or tcp:2525:interface=127.0.0.1", source)
    port = getattr(endpoint, "_port", None)
    if port is not None:
        if not 0 <= port <= 65535:
            fail(f"{what} {description!r}: port {port} is not in 0..65535; write e.g. "
                 f"tcp:25", source)
        family = "tcp6" if type(endpoint).__name__.startswith("TCP6") else "tcp"
        interface = getattr(endpoint, "_interface", "") or ""
        return (family, port, "" if interface in ("0.0.0.0", "::") else interface)
    address = getattr(endpoint, "_address", None)
    if address is not None:
        return ("unix", address, "")
    return ("other", description, "")


class _NoReactor:
    """Stands in for the reactor: endpoints are parsed, never listened on here."""


def validate_config(config: ServerConfig) -> ServerConfig:
    """Cross-check a built configuration. While a file loads (tree.reporting), each
    problem is recorded and the checks go on; called alone it raises the first."""
    spool = config.spoolmanager
    for required in REQUIRED_PROCESSORS:
        if required not in spool.processors and not has_failed("spoolmanager",
                                                                  "spoolmanager.processors"):
            attempt(lambda: fail(
                f"spoolmanager has no {required!r} processor; every configuration needs "
                f"'root' (where mail starts) and 'error' (where failing mail goes): "
                f"copy the spoolmanager section of conf/mailet-mta.yaml or "
                f"conf/config.xml", spool.source))
    for proc in spool.processors.values():
        attempt(lambda: _check_processor(proc, spool.processors))
    _check_listeners(config)
    return config


def _check_processor(proc: ProcessorSpec, processors: dict[str, ProcessorSpec]) -> None:
    if proc.name == "ghost":
        fail("a processor may not be named 'ghost': that state means the mail is "
             "finished; rename the processor", proc.source)
    for name, composite in proc.matchers.items():
        if not composite.children:
            attempt(lambda: fail(f"composite matcher {name!r} ({composite.name}) has no "
                                 f"child matchers; add matchers under it", composite.source))
    attempt(lambda: _check_cycles(proc))
    for index, spec in enumerate(proc.mailets):
        attempt(lambda: _check_pair(proc, index, spec, processors))


def _check_pair(proc: ProcessorSpec, index: int, spec, processors: dict) -> None:
    """One mailet entry: its exception policies and the processors it names."""
    what = f"processor {proc.name!r} mailet {index + 1} ({spec.mailet})"
    _check_policy(spec.on_mailet_exception, MAILET_POLICIES, processors,
                  f"{what} onMailetException", spec.source)
    _check_policy(spec.on_match_exception, MATCH_POLICIES, processors,
                  f"{what} onMatchException", spec.source)
    targets = [(p, spec.parameters[p]) for p in PROCESSOR_PARAMETERS
               if p in spec.parameters]
    if short_name("mailet", spec.mailet) == "ToProcessor":
        if "processor" not in spec.parameters:
            fail(f"{what} needs the parameter processor (where to send the mail)",
                 spec.source)
        targets.append(("processor", spec.parameters["processor"]))
    for param, target in targets:
        target = target.strip()
        if target != "ghost" and target not in processors:
            fail(f"{what} parameter {param} names processor {target!r}, which is not "
                 f"defined{suggestion(target, processors)}; define it or fix the name",
                 spec.source)


def _check_policy(value: str, keywords: tuple[str, ...], processors: dict,
                  what: str, source: str | None) -> None:
    if value in keywords or value in processors:
        return
    fail(f"{what} is {value!r}: use {', '.join(keywords)} or the name of a processor"
         f"{suggestion(value, [*keywords, *processors])}", source)


def _check_cycles(proc: ProcessorSpec) -> None:
    """Named composites may refer to each other, but never round in a circle."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            cycle = " -> ".join(path[path.index(name):] + [name])
            fail(f"composite matchers in processor {proc.name!r} refer to each other in a "
                 f"circle ({cycle}); break the circle", proc.matchers[name].source)
        state[name] = "active"
        for ref in _references(proc.matchers[name], proc.matchers):
            visit(ref, path + [name])
        state[name] = "done"

    for name in proc.matchers:
        visit(name, [])


def _references(spec: MatcherSpec, named: dict[str, MatcherSpec]):
    for child in spec.children:
        if child.name in named and not child.children:
            yield child.name
        yield from _references(child, named)


def _check_listeners(config: ServerConfig) -> None:
    taken: dict[tuple, tuple[str, str | None]] = {}
    names: dict[str, str | None] = {}
    listeners = [("smtpserver", s) for s in config.smtpservers] + \
                [("pop3server", p) for p in config.pop3servers] + \
                [("imapserver", i) for i in config.imapservers]
    for kind, listener in listeners:
        attempt(lambda: _check_listener(kind, listener, taken, names))


def _check_listener(kind: str, listener, taken: dict, names: dict) -> None:
    """One listener's name and socket, against those of the listeners before it."""
    label = f"{kind} {listener.name!r}"
    if listener.name in names:
        fail(f"two listeners are named {listener.name!r} (the other at "
             f"{names[listener.name]}); give each a distinct name", listener.source)
    names[listener.name] = listener.source
    family, port, interface = check_endpoint(listener.listen, f"{label} listen",
                                             listener.source)
    if family == "other" or port == 0:
        return
    for (f2, p2, i2), (other, where) in taken.items():
        if (f2, p2) == (family, port) and (interface == i2 or not interface or not i2):
            fail(f"{label} listens on {listener.listen!r}, the same socket as {other} "
                 f"(at {where}); change one of the ports", listener.source)
    taken[(family, port, interface)] = (label, listener.source)
