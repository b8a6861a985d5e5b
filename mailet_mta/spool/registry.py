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
import importlib.util
import inspect
import pkgutil
import re
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
            if _is_standard(obj, name, module.__name__, iface):
                found[name] = obj
    return found


def standard_class(kind: str, name: str) -> type | None:
    """The standard class ``name`` of ``kind``, as standard_classes(kind) has it, but
    importing only the module whose source defines it: a server loads the mailets its
    pipeline names, not every one (DKIM, ARC, SPF... and their libraries)."""
    _group, _package, iface = _KINDS[kind]
    for module_name in reversed(_defining_modules(kind).get(name, [])):  # the last wins
        obj = getattr(importlib.import_module(module_name), name, None)
        if _is_standard(obj, name, module_name, iface):
            return obj
    return standard_classes(kind).get(name)     # not defined by a class statement


def _is_standard(obj, name: str, module_name: str, iface) -> bool:
    return (inspect.isclass(obj) and obj.__module__ == module_name
            and not name.startswith("_") and iface.implementedBy(obj))


_CLASS_LINE = re.compile(r"^class\s+(\w+)", re.MULTILINE)


@cache
def _defining_modules(kind: str) -> dict[str, list[str]]:
    """Class name -> the standard modules with a top-level ``class`` of that name, in
    standard_classes' order; read from the sources, nothing imported."""
    _group, package_name, _iface = _KINDS[kind]
    package = importlib.import_module(package_name)
    found: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(package.__path__, package_name + "."):
        spec = importlib.util.find_spec(info.name)
        origin = spec.origin if spec is not None else None
        if origin is None or not origin.endswith(".py"):
            continue
        with open(origin, encoding="utf-8") as source:
            for class_name in _CLASS_LINE.findall(source.read()):
                found.setdefault(class_name, []).append(info.name)
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
        cls = _entry_point(group, name) or standard_class(kind, name)
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
    cls = standard_class(kind, short)
    if cls is None:
        attribute = "class" if kind == "mailet" else "match"
        raise ConfigurationError(
            f'{attribute}="{name}": mailet-mta has no {kind} {short} (James\'s class is '
            f"not ported); remove this <mailet>, or write a {kind} of that name and give "
            f"its dotted path (see docs/writing-mailets.md)", source)
    return cls
