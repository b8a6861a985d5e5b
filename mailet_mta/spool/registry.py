"""Finding matcher and mailet classes by the names a configuration uses.

A name resolves, in this order, to:
0. James's fully-qualified names (``org.apache.james.transport.mailets.LocalDelivery``)
   are read as their short name (``LocalDelivery``): see config.james_names;
1. a dotted path ``package.module.ClassName`` (or ``package.module:ClassName``);
2. an entry point in the group ``mailet_mta.matchers`` / ``mailet_mta.mailets``;
3. a standard class: any class with that exact name in a module of the packages
   ``mailets.matchers`` / ``mailets.mailets``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from functools import cache
from importlib import metadata

from ..api import ConfigurationError, IMailet, IMatcher
from ..config.james_names import is_james_name, short_name

_KINDS = {
    "matcher": ("mailet_mta.matchers", "mailets.matchers", IMatcher),
    "mailet": ("mailet_mta.mailets", "mailets.mailets", IMailet),
}


@cache
def standard_classes(kind: str) -> dict[str, type]:
    """Every standard class of ``kind`` ("matcher" or "mailet") by its class name."""
    _group, package_name, iface = _KINDS[kind]
    package = importlib.import_module(package_name)
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__, package_name + "."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and obj.__module__ == module.__name__
                    and not name.startswith("_") and iface.implementedBy(obj)):
                found[name] = obj
    return found


_entry_points: dict[tuple[str, tuple[str, ...]], dict[str, metadata.EntryPoint]] = {}


def refresh() -> None:
    """Forget the entry points read so far: the next lookup scans the installed
    distributions again. A configuration reload calls it, so a plugin package
    installed while the server runs is found at the next reload."""
    _entry_points.clear()


def _entry_point(group: str, name: str):
    # Scanning every installed distribution's metadata costs tens of milliseconds; a
    # configuration names dozens of matchers and mailets, so the scan is done once per
    # group (and per import path, which a test or an embedding application may extend).
    key = (group, tuple(sys.path))
    eps = _entry_points.get(key)
    if eps is None:
        try:
            eps = {ep.name: ep for ep in metadata.entry_points(group=group)}
        except Exception:  # noqa: BLE001 - broken metadata must not stop start-up
            eps = {}
        _entry_points[key] = eps
    ep = eps.get(name)
    return ep.load() if ep is not None else None


def resolve(kind: str, name: str, source: str | None = None) -> type:
    """The class for ``name``; ConfigurationError naming the source line if none."""
    group, package_name, iface = _KINDS[kind]
    cls = None
    if is_james_name(name):
        cls = _james_class(kind, name, source)
    elif "." in name or ":" in name:
        module_name, _, attr = name.replace(":", ".").rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"cannot load {kind} class {name!r}: {exc}", source) from None
    else:
        cls = _entry_point(group, name) or standard_classes(kind).get(name)
        if cls is None:
            known = ", ".join(sorted(standard_classes(kind)))
            raise ConfigurationError(
                f"unknown {kind} {name!r}; use a standard one ({known}), a dotted path, "
                f"or an entry point in the group {group!r}", source)
    if not (inspect.isclass(cls) and iface.implementedBy(cls)):
        raise ConfigurationError(
            f"{name!r} is not a {kind}: it must implement mailet_mta.api.{iface.__name__}",
            source)
    return cls


def _james_class(kind: str, name: str, source: str | None) -> type:
    """The standard class for one of James's class names, or an error naming it."""
    short = short_name(kind, name)
    cls = standard_classes(kind).get(short)
    if cls is None:
        attribute = "class" if kind == "mailet" else "match"
        raise ConfigurationError(
            f'{attribute}="{name}": mailet-mta has no {kind} {short} (James\'s class is '
            f"not ported); remove this <mailet>, or write a {kind} of that name and give "
            f"its dotted path (see docs/writing-mailets.md)", source)
    return cls
