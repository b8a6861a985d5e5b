"""The two ways an IMAP command fails (RFC 3501 §7.1): ``BAD`` and ``NO``."""

from __future__ import annotations

__all__ = ["BadCommand", "CommandRefused"]


class BadCommand(Exception):
    """The command is malformed or unknown: answered ``tag BAD text``."""

    def __init__(self, text: str, code: str | None = None):
        super().__init__(text)
        self.text = text
        self.code = code        # an RFC 5530 response code without brackets, or None


class CommandRefused(Exception):
    """The command is well formed but cannot be done: answered ``tag NO [code] text``."""

    def __init__(self, text: str, code: str | None = None):
        super().__init__(text)
        self.text = text
        self.code = code        # e.g. "TRYCREATE", "NONEXISTENT", "OVERQUOTA"
