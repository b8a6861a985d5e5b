"""Checks shared by the protocol fuzzers: is a block of server output well-formed?"""

from __future__ import annotations

import re

SMTP_LINE = re.compile(r"\A([2-5][0-9][0-9])([ -])([\x20-\x7e]*)\Z")
POP3_STATUS = re.compile(rb"\A(\+OK|-ERR)( [\x20-\x7e]*)?\Z")
FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=list(__import__(
    "hypothesis").HealthCheck))


def smtp_replies(raw: bytes) -> list[tuple[int, str]]:
    """Split SMTP output into (code, text) of each final line; assert the RFC 5321
    §4.2 syntax: CRLF lines of at most 512 octets, ``ddd-`` continuations with the same
    code ending in one ``ddd `` line."""
    assert raw == b"" or raw.endswith(b"\r\n"), raw[-80:]
    text = raw.decode("ascii")                 # replies are ASCII only
    out, pending = [], None
    for line in text.split("\r\n")[:-1]:
        assert len(line) + 2 <= 512, line[:80]
        m = SMTP_LINE.match(line)
        assert m, f"malformed reply line {line!r}"
        code = int(m.group(1))
        if pending is not None:
            assert code == pending, f"continuation code changed: {line!r}"
        if m.group(2) == "-":
            pending = code
        else:
            pending = None
            out.append((code, m.group(3)))
    assert pending is None, "multi-line reply not finished"
    return out
