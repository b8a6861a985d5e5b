"""Parsing the address lists that matcher conditions and mailet parameters carry.

``"a@example.com, b@example.com"`` (or a YAML list) becomes a list of
:class:`~mailet_mta.api.MailAddress`; an invalid entry becomes a message naming it.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailet_mta.api import MailAddress, MailAddressError


def split_list(value: object) -> list[str]:
    """A comma-separated string (or a list) as stripped, non-empty strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items: Iterable[object] = value
    else:
        items = str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def parse_addresses(items: Iterable[str], what: str) -> list[MailAddress]:
    """Parse each item as an address; raise ValueError naming ``what`` and the bad item."""
    addresses = []
    for item in items:
        try:
            addresses.append(MailAddress.parse(item))
        except MailAddressError as exc:
            raise ValueError(f"{what}: {item!r} is not a mail address ({exc})") from None
    return addresses


def parse_domains(items: Iterable[str], what: str) -> set[str]:
    """Domains normalised the way MailAddress stores them (lower-case ASCII/IDNA)."""
    domains = set()
    for item in items:
        try:
            domains.add(MailAddress("x", item.lstrip("@")).domain)
        except MailAddressError as exc:
            raise ValueError(f"{what}: {item!r} is not a domain ({exc})") from None
    return domains
