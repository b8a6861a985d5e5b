"""Value conversions shared by every section: each takes a Node and the key's name.

A converter returns the typed value or raises ConfigurationError at the node's
``file:line``, naming the key and what a valid value looks like. XML gives strings and
YAML gives typed scalars; both go through the same converter.
"""

from __future__ import annotations

from typing import Any, Callable

from ..api import ConfigurationError, parse_bool, parse_duration, parse_size
from .tree import Node, fail

Converter = Callable[[Node, str], Any]


def scalar(node: Node, name: str) -> Any:
    if not node.is_scalar:
        kind = "a list" if node.is_list else "a block of keys"
        fail(f"{name} must be a single value, not {kind}", node.source)
    return node.value


def text(node: Node, name: str) -> str:
    value = scalar(node, name)
    if value is None or not node.text.strip():
        fail(f"{name} needs a value", node.source)
    return node.text.strip()


def written_text(node: Node, name: str) -> str:
    """A name as written (``class: Null`` is the Null mailet, not a YAML null)."""
    scalar(node, name)
    if not node.text.strip():
        fail(f"{name} needs a value", node.source)
    return node.text.strip()


def optional_text(node: Node, name: str) -> str | None:
    value = scalar(node, name)
    if value is None or not node.text.strip():
        return None
    return node.text.strip()


def boolean(node: Node, name: str) -> bool:
    value = scalar(node, name)
    try:
        return parse_bool(value if value is not None else "", name)
    except ConfigurationError as exc:
        fail(exc.message, node.source)


def integer(minimum: int = 0) -> Converter:
    def convert(node: Node, name: str) -> int:
        value = scalar(node, name)
        if isinstance(value, bool) or value is None:
            number = None
        elif isinstance(value, int):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                number = None
        if number is None:
            fail(f"{name} must be a whole number, not {value!r}", node.source)
        if number < minimum:
            fail(f"{name} must be at least {minimum}, not {number}", node.source)
        return number
    return convert


def size(default_unit: str = "") -> Converter:
    """Octets from ``512``/``10k``/``10m``; a bare number is in ``default_unit``."""
    def convert(node: Node, name: str) -> int:
        value = scalar(node, name)
        if isinstance(value, bool) or value is None:
            fail(f"{name} must be a size like 512, 10k or 1m, not {value!r}", node.source)
        try:
            number = parse_size(value, name, default_unit)
        except ConfigurationError as exc:
            fail(exc.message, node.source)
        if number < 0:
            fail(f"{name} must not be negative", node.source)
        return number
    return convert


def duration(allow_zero: bool = False) -> Converter:
    """Seconds from ``30``/``500ms``/``5 minutes``; a bare number is seconds."""
    def convert(node: Node, name: str) -> float:
        value = scalar(node, name)
        if isinstance(value, bool) or value is None:
            fail(f"{name} must be a duration like 30s, 500ms or 5 minutes, not {value!r}",
                 node.source)
        try:
            seconds = parse_duration(value, name)
        except ConfigurationError as exc:
            fail(exc.message, node.source)
        if seconds < 0 or (seconds == 0 and not allow_zero):
            fail(f"{name} must be {'zero or more' if allow_zero else 'more than zero'} "
                 f"seconds, not {value!r}", node.source)
        return seconds
    return convert


def string_list(node: Node, name: str) -> list[str]:
    """A YAML list, or one comma-separated string (James's style)."""
    if node.is_list:
        out = []
        for item in node.value:
            out.extend(_split(text(item, f"{name} entry")))
        return out
    scalar(node, name)
    return _split(node.text)


def network_list(node: Node, name: str) -> list[str]:
    """A :func:`string_list` of networks, each entry checked at its own ``file:line``."""
    from .validate import check_networks

    if node.is_list:
        written = [(text(item, f"{name} entry"), item.source) for item in node.value]
    else:
        scalar(node, name)
        written = [(node.text, node.source)]
    out = []
    for value, source in written:
        out.extend(check_networks(_split(value), name, source))
    return out


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def choice(options: dict[str, str], hint: str) -> Converter:
    """One of ``options`` (case-insensitive) mapped to its normal form."""
    def convert(node: Node, name: str) -> str:
        scalar(node, name)
        word = node.text.strip().lower()
        if word not in options:
            fail(f"{name} must be {hint}, not {node.value!r}", node.source)
        return options[word]
    return convert


auth_required = choice({"true": "true", "yes": "true", "on": "true", "false": "false",
                        "no": "false", "off": "false", "announce": "announce"},
                       "true, false or announce")
verify_identity = choice({"strict": "strict", "true": "strict", "yes": "strict",
                          "relaxed": "relaxed", "false": "false", "no": "false",
                          "disabled": "false", "off": "false"},
                         "strict (or true), relaxed, or false (or disabled)")
tls_version = choice({"tlsv1.2": "TLSv1.2", "tlsv1.3": "TLSv1.3", "1.2": "TLSv1.2",
                      "1.3": "TLSv1.3"}, "TLSv1.2 or TLSv1.3")
log_level = choice({"debug": "debug", "info": "info", "warn": "warn", "warning": "warn",
                    "error": "error"}, "debug, info, warn or error")
log_format = choice({"text": "text", "json": "json"}, "text or json")


def file_path(node: Node, name: str) -> str:
    """A path; James's ``file://`` prefix is accepted and dropped."""
    value = text(node, name)
    return value[len("file://"):] if value.startswith("file://") else value
