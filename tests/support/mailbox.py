"""Read a user's mailbox over real POP3 (for end-to-end tests)."""

from __future__ import annotations

import poplib


def pop3_messages(port: int, user: str, password: str, host: str = "127.0.0.1") -> list[bytes]:
    """Every message of ``user``'s mailbox, as RETR returns it (lines joined by CRLF)."""
    box = poplib.POP3(host, port, timeout=10)
    try:
        box.user(user)
        box.pass_(password)
        return [b"\r\n".join(box.retr(i + 1)[1]) for i in range(box.stat()[0])]
    finally:
        box.quit()
