"""One ``Authentication-Results`` header (RFC 8601) per mail, written by the
authentication mailets (DKIMVerify, SPF, DMARC) together.

Each mailet appends its result clauses to the attribute ``ATTR_AUTH_RESULTS`` and
calls :func:`write_header`, which replaces the header carrying our authserv-id (the
server name) by one holding every clause so far. A header from outside that claims
our authserv-id is removed the first time (RFC 8601 §5: a forged one would make later
filters trust it); headers of other authserv-ids are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from authres import AuthenticationResultsHeader

from mailet_mta.api import Mail

ATTR_AUTH_RESULTS = "mailet_mta.auth.results"    # list[str]: result clauses, in order
HEADER = "Authentication-Results"


def authserv_id_of(value: str) -> str:
    """The authserv-id of an Authentication-Results value (its first token)."""
    try:
        return str(AuthenticationResultsHeader.parse_value(value).authserv_id)
    except Exception:  # noqa: BLE001 - a malformed header: its first token decides
        return value.split(";", 1)[0].strip().split(" ", 1)[0]


def add_results(mail: Mail, authserv_id: str, clauses: Iterable[object]) -> None:
    """Record ``clauses`` (authres result objects or strings) and rewrite the header."""
    results = list(mail.get_attribute(ATTR_AUTH_RESULTS) or [])
    results.extend(str(c) for c in clauses)
    mail.set_attribute(ATTR_AUTH_RESULTS, results)
    write_header(mail, authserv_id, results)


def write_header(mail: Mail, authserv_id: str, results: Sequence[str]) -> None:
    """Replace the header with our authserv-id by one with ``results``; keep others."""
    values = mail.headers().get_all(HEADER) or []
    foreign = [str(v) for v in values
               if authserv_id_of(str(v)).lower() != authserv_id.lower()]
    if values:
        mail.remove_headers([HEADER])
        for value in foreign:
            mail.add_header(HEADER, value)
    body = ";\r\n\t".join(results)
    mail.add_header(HEADER, f"{authserv_id};\r\n\t{body}" if results else f"{authserv_id}; none")
