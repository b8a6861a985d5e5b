"""Value conversions shared by every section: each takes a Node and the key's name.

A converter returns the typed value or raises ConfigurationError at the node's
``file:line``, naming the key and what a valid value looks like. XML gives strings and
YAML gives typed scalars; both go through the same converter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..api import ConfigurationError, parse_bool, parse_duration, parse_size
from .tree import Node, fail, warn

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


def workers(node: Node, name: str) -> int | None:
    """``auto`` (None: one per core) or a number of processes from 1 to MAX_WORKERS."""
    from .model import MAX_WORKERS

    value = scalar(node, name)
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    if isinstance(value, bool) or not str(value or "").strip().isdigit() \
            or not 1 <= int(str(value).strip()) <= MAX_WORKERS:
        fail(f"{name} must be auto or a number of processes from 1 to {MAX_WORKERS}, "
             f"not {value!r}", node.source)
    return int(str(value).strip())


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
def policy(*keywords: str) -> Converter:
    """An exception policy: one of ``keywords`` in any case (James writes ``noMatch``),
    else a processor name exactly as written."""
    def convert(node: Node, name: str) -> str:
        word = written_text(node, name)
        return word.lower() if word.lower() in keywords else word
    return convert


# James 3's auth.announce: when AUTH is offered, in the words of authRequired.
auth_announce = choice({"never": "false", "always": "announce",
                        "forunauthorizedaddresses": "true"},
                       "never, always or forUnauthorizedAddresses")
tls_version = choice({"tlsv1.2": "TLSv1.2", "tlsv1.3": "TLSv1.3", "1.2": "TLSv1.2",
                      "1.3": "TLSv1.3"}, "TLSv1.2 or TLSv1.3")
log_level = choice({"debug": "debug", "info": "info", "warn": "warn", "warning": "warn",
                    "error": "error"}, "debug, info, warn or error")
log_format = choice({"text": "text", "json": "json"}, "text or json")


def file_path(node: Node, name: str) -> str:
    """A path; James's ``file://`` prefix is accepted and dropped."""
    value = text(node, name)
    return value[len("file://"):] if value.startswith("file://") else value


# -- units that James and YAML may read differently ----------------------------------
# A bare number is read the same way whichever spelling a key is written in; where a
# reader coming from James could mean another unit, a warning names the key, the unit
# it was read in, and how to write the unit out. The XML reader writes James's units
# out before these converters run (see xml_loader.JAMES_UNITS), so XML never warns.
def is_bare_number(node: Node) -> bool:
    """True for ``100`` or ``"100"``: a number with no unit after it."""
    value = node.value
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and value.strip().replace(".", "", 1).isdigit()


def human_size(octets: int) -> str:
    """``10 MiB``, ``512 KiB``, ``100 B``: the largest binary unit that divides."""
    for unit, factor in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if octets >= factor and octets % factor == 0:
            return f"{octets // factor} {unit}"
    return f"{octets} B"


def warn_if_bare(node: Node, name: str, value, reading: str, hint: str) -> None:
    """Warn that a nonzero bare number was read as ``reading``; ``hint`` (with
    ``{written}`` for the value) says how to write the unit out."""
    if value and is_bare_number(node):
        written = node.text.strip()
        warn(f"{name}: {written} has no unit and is read as {written} {reading}; "
             f"{hint.format(written=written)}", node.source)


def message_size(node: Node, name: str) -> int:
    """James's ``maxmessagesize`` in any spelling: a bare number counts KiB (James's
    unit); a nonzero bare number warns, because the model's name counts octets."""
    octets = size("k")(node, name)
    warn_if_bare(node, name, octets, f"KiB ({human_size(octets)}), James's unit for "
                 f"maxmessagesize", "write {written}k to keep that reading, or a size "
                 "with its unit (10M, 10MiB, 10485760B)")
    return octets


def timeout(allow_zero: bool = False) -> Converter:
    """A listener timeout in seconds; a bare number warns, because James 2's
    config.xml counted these in milliseconds and James 3 counts seconds."""
    read = duration(allow_zero)

    def convert(node: Node, name: str) -> float:
        seconds = read(node, name)
        warn_if_bare(node, name, seconds, "seconds", "James 2's config.xml counted "
                     "milliseconds here (James 3 counts seconds): write {written}s to "
                     "keep that reading, or the unit you mean (500ms, 30s, 5 minutes)")
        return seconds
    return convert


def repository_name(node: Node, name: str) -> str:
    """A repository's name; James's URL form ``file://var/mail/error/`` means ``error``
    (its last path component), as ToRepository reads ``repositoryPath``."""
    written = text(node, name)
    path = written.split("://", 1)[1] if "://" in written else written
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts:
        fail(f"{name} {written!r} names no repository; write e.g. error", node.source)
    return parts[-1]
