"""Parsing the arguments of MAIL FROM / RCPT TO: the path and the ESMTP parameters.

``split_path_and_params("FROM:<a@b> SIZE=10 BODY=8BITMIME", "FROM")`` returns the
path text (with its angle brackets) and an ordered dict of parameters whose keywords
are upper-cased. Quoted local parts may hold ``>`` or spaces; the scan respects quotes.
"""

from __future__ import annotations

import re

from ..address import MailAddress, MailAddressError, parse_path


class CommandSyntaxError(ValueError):
    """The arguments do not follow the command's syntax (answered with 501)."""


_KEYWORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")


def split_path_and_params(arg: str, keyword: str) -> tuple[str, dict[str, str | None]]:
    """Split ``FROM:<path> K=V …`` into the path and its parameters."""
    head = keyword + ":"
    if arg[:len(head)].upper() != head:
        raise CommandSyntaxError(f"Syntax: {'MAIL' if keyword == 'FROM' else 'RCPT'} "
                                 f"{keyword}:<address>")
    rest = arg[len(head):].lstrip(" ")
    if not rest.startswith("<"):
        raise CommandSyntaxError("the address must be enclosed in <>")
    end = _closing_bracket(rest)
    path, tail = rest[:end + 1], rest[end + 1:]
    if tail and not tail.startswith(" "):
        raise CommandSyntaxError("parameters must follow the address after a space")
    params: dict[str, str | None] = {}
    for token in tail.split():
        key, sep, value = token.partition("=")
        if not _KEYWORD_RE.match(key):
            raise CommandSyntaxError(f"malformed parameter {token!r}")
        key = key.upper()
        value = value if sep else None
        if key in params and params[key] != value:   # a repeat with the same value is
            raise CommandSyntaxError(f"parameter {key} given twice with different "
                                     f"values")       # harmless (smtplib sends SIZE twice)
        params[key] = value
    return path, params


def _closing_bracket(text: str) -> int:
    quoted = False
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
        i += 1
    raise CommandSyntaxError("the address has no closing '>'")


def parse_forward_path(path: str, postmaster_domain: str) -> MailAddress:
    """A RCPT path; source routes are dropped (RFC 5321 §C), ``<postmaster>`` (no
    domain, §4.5.1) becomes postmaster@``postmaster_domain``."""
    if path[1:-1].strip().lower() == "postmaster":
        return MailAddress("postmaster", postmaster_domain)
    return parse_path(path, allow_source_route=True)


def parse_reverse_path(path: str) -> MailAddress | None:
    """A MAIL path: None for ``<>``; source routes dropped."""
    return parse_path(path, allow_null=True, allow_source_route=True)


_XTEXT_RE = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*\Z")
_ATOM_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
ENVID_MAX = 100   # RFC 3461 §4.4
ORCPT_MAX = 500   # RFC 3461 §4.2


def xtext_decode(value: str, what: str = "xtext") -> str:
    """Decode RFC 3461 §4 xtext (``+HH`` escapes) to printable US-ASCII.

    Only ``!``..``~`` other than ``+`` and ``=`` may appear as themselves, and the
    decoded text must be printable US-ASCII (space to ``~``): a CR, LF or control
    character would later break the delivery report built from it.
    """
    if not _XTEXT_RE.match(value):
        raise CommandSyntaxError(f"malformed xtext in {what}")
    decoded = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
    if any(not " " <= ch <= "~" for ch in decoded):
        raise CommandSyntaxError(f"{what} must decode to printable US-ASCII")
    return decoded


def parse_envid(value: str | None) -> str:
    """RFC 3461 §4.4 ENVID=xtext, at most 100 characters → the decoded identifier."""
    if not value:
        raise CommandSyntaxError("invalid ENVID parameter")
    if len(value) > ENVID_MAX:
        raise CommandSyntaxError(f"ENVID longer than {ENVID_MAX} characters")
    return xtext_decode(value, "ENVID")


_NOTIFY_WORDS = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}


def parse_notify(value: str | None) -> list[str]:
    """RFC 3461 §4.1 NOTIFY: NEVER alone, or a list of SUCCESS/FAILURE/DELAY."""
    if not value:
        raise CommandSyntaxError("NOTIFY needs a value")
    words = [w.upper() for w in value.split(",")]
    if not set(words) <= _NOTIFY_WORDS or ("NEVER" in words and len(words) > 1):
        raise CommandSyntaxError(f"invalid NOTIFY={value}")
    return words


def parse_orcpt(value: str | None) -> str:
    """RFC 3461 §4.2 ORCPT=addr-type;xtext → ``"rfc822;user@example.com"``.

    The addr-type is an atom, the whole value at most 500 characters, and the address
    must decode to printable US-ASCII.
    """
    if not value or ";" not in value:
        raise CommandSyntaxError("ORCPT needs addr-type;address")
    if len(value) > ORCPT_MAX:
        raise CommandSyntaxError(f"ORCPT longer than {ORCPT_MAX} characters")
    kind, _, addr = value.partition(";")
    if not kind or not addr or not _ATOM_RE.match(kind):
        raise CommandSyntaxError("ORCPT needs addr-type;address")
    return f"{kind};{xtext_decode(addr, 'ORCPT')}"


__all__ = ["CommandSyntaxError", "split_path_and_params", "parse_forward_path",
           "parse_reverse_path", "xtext_decode", "parse_envid", "parse_notify", "parse_orcpt",
           "MailAddressError"]
