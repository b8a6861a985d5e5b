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


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 §4 xtext (``+HH`` escapes)."""
    def repl(m):
        return chr(int(m.group(1), 16))
    if re.search(r"\+(?![0-9A-F]{2})", value):
        raise CommandSyntaxError(f"malformed xtext {value!r}")
    return re.sub(r"\+([0-9A-F]{2})", repl, value)


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
    """RFC 3461 §4.2 ORCPT=addr-type;xtext → ``"rfc822;user@example.com"``."""
    if not value or ";" not in value:
        raise CommandSyntaxError("ORCPT needs addr-type;address")
    kind, _, addr = value.partition(";")
    if not kind or not addr:
        raise CommandSyntaxError("ORCPT needs addr-type;address")
    return f"{kind};{xtext_decode(addr)}"


__all__ = ["CommandSyntaxError", "split_path_and_params", "parse_forward_path",
           "parse_reverse_path", "xtext_decode", "parse_notify", "parse_orcpt",
           "MailAddressError"]
