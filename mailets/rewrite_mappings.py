"""Recipient rewrite mappings: the target syntax and their recursive resolution.

A mapping source is ``local@domain`` (one address), ``*@domain`` (every address of the
domain without a mapping of its own) or ``domain`` (the whole domain). Targets:

- ``user@other.example`` — an alias or forward (``alias:``, ``forward:``, ``group:``
  and ``address:`` prefixes are accepted and ignored);
- ``regex:<pattern>:<replacement>`` — when the pattern (Python ``re``; the last ``:``
  ends it) matches the whole address, the replacement with its groups (``\\1`` or
  James's ``${1}``) is the new address; when it does not match, the mapping gives
  nothing;
- ``domain:<other.example>`` — keep the local part, replace the domain (domain alias);
- ``error:<code> <text>`` — the address is refused with that message.

Resolution applies the mappings of each new address again, up to :data:`MAX_DEPTH`
levels; a target equal to its source ends the chain (``bob@d → bob@d, archive@d``
keeps bob), a target that comes back to an address already on the chain is a loop.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from mailet_mta.api import MailAddress, MailAddressError, MappingError

MAX_DEPTH = 10
_ADDRESS_PREFIXES = ("alias:", "forward:", "group:", "address:")
_DOLLAR_GROUP = re.compile(r"\$\{(\d+)\}|\$(\d+)")
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_ENTRY_SPLIT = re.compile(r"[\r\n]+|,(?=\s*[^\s=,;]+\s*=)")




class ErrorMapping(MappingError):
    """An ``error:<code> <text>`` mapping: the administrator's own reply, fit to show
    the client (the other MappingErrors name internal addresses)."""

    def reply(self) -> tuple[int, str, str]:
        """(code, enhanced status, text) for SMTP; 550 5.1.1 when the text has none."""
        words = str(self).split()
        code = 550
        if words and len(words[0]) == 3 and words[0].isdigit() and words[0][0] in "45":
            code = int(words.pop(0))
        status = f"{code // 100}.1.1"
        if words and _STATUS.fullmatch(words[0]) and words[0][0] == status[0]:
            status = words.pop(0)
        return code, status, " ".join(words) or "Address rejected"


def source_key(text: str) -> str:
    """The normalised form of a mapping source; ValueError when it is none of the three."""
    text = text.strip()
    try:
        if "@" in text:
            return str(MailAddress.parse(text)).lower()
        return MailAddress("x", text).domain
    except MailAddressError as exc:
        raise ValueError(f"{text!r} is not an address, *@domain or domain ({exc})") from None


def lookup_keys(address: MailAddress) -> list[str]:
    """The sources to look for, most specific first (sources compare case-insensitively,
    as mailbox names do on this server)."""
    return [str(address).lower(), f"*@{address.domain}", address.domain]


def lookup_in(table: dict[str, list[str]], address: MailAddress) -> list[str]:
    """The targets ``table`` (normalised sources → targets) gives ``address``, most
    specific source first; [] when none applies."""
    for key in lookup_keys(address):
        if key in table:
            return list(table[key])
    return []


def _regex_parts(body: str) -> tuple[re.Pattern[str], str]:
    pattern, sep, replacement = body.rpartition(":")
    if not sep or not pattern:
        raise ValueError(f"'regex:{body}' must be regex:<pattern>:<replacement>")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"'regex:{body}': invalid pattern ({exc})") from None
    return compiled, _DOLLAR_GROUP.sub(lambda m: r"\g<%s>" % (m.group(1) or m.group(2)),
                                       replacement)


def check_target(target: str) -> None:
    """Raise ValueError when ``target`` is not a valid mapping target."""
    text = target.strip()
    lower = text.lower()
    if lower.startswith("error:"):
        if not text[6:].strip():
            raise ValueError(f"{target!r}: write error:<code> <text>")
    elif lower.startswith("regex:"):
        _regex_parts(text[6:])
    elif lower.startswith("domain:"):
        domain = text[7:].strip()
        if not domain or "@" in domain:
            raise ValueError(f"{target!r}: write domain:<other.example> (a domain, no '@')")
        source_key(domain)
    else:
        body = text[len(next((p for p in _ADDRESS_PREFIXES if lower.startswith(p)), "")):]
        try:
            MailAddress.parse(body)
        except MailAddressError as exc:
            raise ValueError(f"{target!r} is not an address ({exc})") from None


def apply_target(target: str, address: MailAddress) -> list[MailAddress]:
    """The addresses ``target`` maps ``address`` to; MappingError for ``error:`` or a
    target that cannot give an address."""
    text = target.strip()
    lower = text.lower()
    try:
        if lower.startswith("error:"):
            raise ErrorMapping(text[6:].strip() or "550 5.1.1 Address rejected")
        if lower.startswith("regex:"):
            pattern, replacement = _regex_parts(text[6:])
            m = pattern.fullmatch(str(address))
            return [MailAddress.parse(m.expand(replacement))] if m else []
        if lower.startswith("domain:"):
            return [MailAddress(address.local_part, text[7:].strip())]
        for prefix in _ADDRESS_PREFIXES:
            if lower.startswith(prefix):
                text = text[len(prefix):]
                break
        return [MailAddress.parse(text)]
    except (ValueError, re.error, IndexError) as exc:
        if isinstance(exc, MappingError):
            raise
        raise MappingError(f"550 5.3.5 Invalid rewrite mapping {target!r} for {address}: "
                           f"{exc}") from None


Lookup = Callable[[MailAddress], Awaitable[list[str]]]


async def resolve(address: MailAddress, lookup: Lookup, depth: int = 0,
                  chain: tuple[MailAddress, ...] = ()) -> list[MailAddress]:
    """The final addresses for ``address`` after applying mappings recursively."""
    targets = await lookup(address)
    if not targets:
        return [address]
    produced: list[MailAddress] = []
    for target in targets:
        produced.extend(a for a in apply_target(target, address) if a not in produced)
    if not produced:            # e.g. only a regex that did not match
        return [address]
    final: list[MailAddress] = []
    for new in produced:
        if new == address:
            results = [new]
        elif new in chain:
            raise MappingError(f"550 5.4.6 Rewrite loop for {chain[0] if chain else address}:"
                               f" {' -> '.join(str(a) for a in chain + (address, new))}")
        elif depth + 1 >= MAX_DEPTH:
            raise MappingError(f"550 5.4.6 Rewrite mappings nest deeper than {MAX_DEPTH} "
                               f"levels for {chain[0] if chain else address}")
        else:
            results = await resolve(new, lookup, depth + 1, chain + (address,))
        final.extend(a for a in results if a not in final)
    return final


def resolve_now(address: MailAddress,
                lookup: Callable[[MailAddress], list[str]]) -> list[MailAddress]:
    """:func:`resolve` with a lookup that answers at once (an in-memory table): the
    final addresses, or MappingError."""
    async def answer(addr: MailAddress) -> list[str]:
        return lookup(addr)

    coroutine = resolve(address, answer)
    try:
        coroutine.send(None)
    except StopIteration as done:
        found: list[MailAddress] = done.value
        return found
    coroutine.close()
    raise RuntimeError("resolve_now: the lookup did not answer at once")


def parse_mapping_entries(values: Iterable[object]) -> dict[str, list[str]]:
    """``["alias@d=t1;t2", "*@d=catchall@d"]`` (or one string with entries separated by
    new lines or commas) → {normalised source: [targets]}; ValueError on a bad entry."""
    table: dict[str, list[str]] = {}
    for value in values:
        entries = value if isinstance(value, (list, tuple)) else _ENTRY_SPLIT.split(str(value))
        for entry in entries:
            entry = str(entry).strip()
            if not entry:
                continue
            source, sep, targets = entry.partition("=")
            if not sep or not targets.strip():
                raise ValueError(f"{entry!r} must be source=target[;target…]")
            key = source_key(source)
            for target in (t.strip() for t in targets.split(";")):
                if target:
                    check_target(target)
                    table.setdefault(key, []).append(target)
    return table
