"""RFC 5321 mail addresses: ``MailAddress`` and the parser for SMTP paths.

A ``MailAddress`` is a local part and a domain. The local part is kept exactly as the
client sent it (RFC 5321 §2.4: it is case-sensitive and only the receiving host may
interpret it); the domain is compared without regard to case and stored in its ASCII
(IDNA) form, so ``bob@Example.COM`` and ``bob@example.com`` are the same mailbox for
domain checks, and ``user@bücher.example`` matches ``user@xn--bcher-kva.example``.

``MailAddress.parse`` accepts the forms a mail server meets in practice — dot-atoms,
quoted local parts, domain names, IPv4/IPv6 address literals, UTF-8 (RFC 6531) — and
refuses everything that has been used to trick relays: several ``@``, source routes,
bang paths and percent hacks are refused by :func:`parse_path` unless asked for.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NoReturn

__all__ = ["MailAddress", "MailAddressError", "parse_path", "NULL_SENDER"]


class MailAddressError(ValueError):
    """An address or path that does not follow RFC 5321; the message says why."""


# RFC 5321 §4.1.2 atext; UTF-8 (RFC 6531 §3.3) is allowed as any non-ASCII character.
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff"
_DOT_ATOM_RE = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
_QUOTED_RE = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"\Z')
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")

MAX_LOCAL_PART = 64     # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255        # §4.5.3.1.2
MAX_PATH = 256          # §4.5.3.1.3


def _normalise_domain(domain: str) -> str:
    """Return the ASCII, lower-case form of ``domain`` or raise MailAddressError."""
    if not domain:
        raise MailAddressError("the domain is empty")
    if domain.startswith("["):
        return _normalise_literal(domain)
    if domain.endswith("."):
        raise MailAddressError(f"the domain {domain!r} ends with a dot")
    if not domain.isascii():
        try:
            import idna

            domain = idna.encode(domain, uts46=True).decode("ascii")
        except Exception as exc:  # noqa: BLE001 - idna raises several error types
            raise MailAddressError(f"the domain {domain!r} is not a valid IDN: {exc}") from None
    domain = domain.lower()
    if len(domain) > MAX_DOMAIN:
        raise MailAddressError("the domain is longer than 255 octets")
    labels = domain.split(".")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise MailAddressError(f"the domain {domain!r} has an invalid label {label!r}")
    return domain


def _normalise_literal(literal: str) -> str:
    if not literal.endswith("]"):
        raise MailAddressError(f"the address literal {literal!r} is not closed with ']'")
    body = literal[1:-1]
    try:
        if body[:5].lower() == "ipv6:":
            return "[IPv6:%s]" % ipaddress.IPv6Address(body[5:]).compressed
        return "[%s]" % ipaddress.IPv4Address(body)
    except ValueError:
        raise MailAddressError(f"{literal!r} is not an IPv4 or IPv6 address literal") from None


def _split_local_domain(text: str) -> tuple[str, str]:
    """Split at the ``@`` that separates local part and domain (outside quotes)."""
    if text.startswith('"'):
        end = 1
        while end < len(text):
            ch = text[end]
            if ch == "\\":
                end += 2
                continue
            if ch == '"':
                break
            end += 1
        else:
            raise MailAddressError("the quoted local part is not closed")
        local, rest = text[: end + 1], text[end + 1:]
        if not rest.startswith("@"):
            raise MailAddressError("a quoted local part must be followed by '@domain'")
        return local, rest[1:]
    local, sep, domain = text.rpartition("@")
    if not sep:
        raise MailAddressError(f"{text!r} has no '@domain'")
    return local, domain


class MailAddress:
    """An RFC 5321 mailbox: ``local_part@domain``.

    Instances are immutable and hashable. Equality compares the local part exactly and
    the domain case-insensitively (both in normalised form). ``str()`` gives the address
    as it goes on the wire, without angle brackets.
    """

    __slots__ = ("local_part", "domain", "_key")
    local_part: str
    domain: str
    _key: tuple[str, str]

    def __init__(self, local_part: str, domain: str):
        if not local_part:
            raise MailAddressError("the local part is empty")
        if not (_DOT_ATOM_RE.match(local_part) or _QUOTED_RE.match(local_part)):
            raise MailAddressError(f"{local_part!r} is not a valid local part")
        if len(local_part.encode("utf-8")) > MAX_LOCAL_PART:
            raise MailAddressError("the local part is longer than 64 octets")
        object.__setattr__(self, "local_part", local_part)
        object.__setattr__(self, "domain", _normalise_domain(domain))
        object.__setattr__(self, "_key", (local_part, self.domain))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("MailAddress is immutable")

    @classmethod
    def parse(cls, text: str) -> MailAddress:
        """Parse ``local@domain`` (angle brackets allowed) or raise MailAddressError."""
        if isinstance(text, MailAddress):
            return text
        text = text.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        if len(text.encode("utf-8")) > MAX_PATH:
            raise MailAddressError("the address is longer than 256 octets")
        local, domain = _split_local_domain(text)
        if not local.startswith('"') and "@" in local:
            raise MailAddressError(f"{text!r} has more than one '@'")
        return cls(local, domain)

    @property
    def is_quoted(self) -> bool:
        """True when the local part is a quoted string."""
        return self.local_part.startswith('"')

    @property
    def user(self) -> str:
        """The local part with quoting removed (``"a b"`` → ``a b``)."""
        if self.is_quoted:
            return re.sub(r"\\(.)", r"\1", self.local_part[1:-1])
        return self.local_part

    @property
    def is_ip_literal(self) -> bool:
        return self.domain.startswith("[")

    @property
    def is_utf8(self) -> bool:
        """True when the address needs SMTPUTF8 (RFC 6531) to be transported."""
        return not self.local_part.isascii()

    def __str__(self) -> str:
        return f"{self.local_part}@{self.domain}"

    def __repr__(self) -> str:
        return f"MailAddress({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MailAddress):
            return self._key == other._key
        if isinstance(other, str):
            try:
                return self._key == MailAddress.parse(other)._key
            except MailAddressError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key)

    def __reduce__(self) -> tuple[type[MailAddress], tuple[str, str]]:
        return (MailAddress, (self.local_part, self.domain))


NULL_SENDER = None
"""The null reverse-path ``<>``: a Mail whose ``sender`` is None has it."""


def parse_path(text: str, *, allow_null: bool = False,
               allow_source_route: bool = False) -> MailAddress | None:
    """Parse an SMTP ``Reverse-path`` / ``Forward-path`` (the part inside MAIL/RCPT).

    Returns a MailAddress, or None for ``<>`` when ``allow_null``. Source routes
    (``<@a,@b:user@c>``) are refused unless ``allow_source_route``, in which case the
    route is discarded as RFC 5321 §C allows. Bang paths and ``%`` hacks are legal local
    parts and parse; relay policy is what refuses to route them.
    """
    text = text.strip()
    if not (text.startswith("<") and text.endswith(">")):
        raise MailAddressError("the path must be enclosed in angle brackets")
    inner = text[1:-1]
    if inner == "":
        if allow_null:
            return None
        raise MailAddressError("the null path <> is not allowed here")
    if inner.startswith("@"):
        if not allow_source_route:
            raise MailAddressError("source routes are not accepted")
        colon = inner.find(":")
        if colon < 0:
            raise MailAddressError("the source route has no ':'")
        inner = inner[colon + 1:]
    return MailAddress.parse(inner)
