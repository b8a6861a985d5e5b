"""The errors an administration operation raises: each says what is wrong and what to do.

The HTTP API answers them with their ``status`` (404, 409, 422) as RFC 9457 problem
details; the command line prints the message on one line and exits 1.
"""

from __future__ import annotations


class AdminError(Exception):
    """An operation that cannot be done; ``str(error)`` is the one-line reason."""

    status = 400
    title = "Bad request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(AdminError):
    """The named thing (domain, user, mail, queue entry…) does not exist."""

    status = 404
    title = "Not found"


class Conflict(AdminError):
    """The operation contradicts the current state (exists already, still in use)."""

    status = 409
    title = "Conflict"


class Invalid(AdminError):
    """A value is malformed or out of its bounds (a name, a size, a processor)."""

    status = 422
    title = "Invalid value"
