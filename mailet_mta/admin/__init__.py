"""The administration operations, shared by the command line and the admin HTTP API.

Each module holds the operations on one kind of thing (``domains``, ``users``,
``mappings``, ``repositories``, ``queue``, ``spool``, ``nodes``, ``health``,
``tokens``). An operation is a plain function over a SQLAlchemy ``Connection`` (and the
server's configuration where it matters) that returns plain data — dicts, lists,
numbers — and raises an :class:`AdminError` subclass saying what went wrong:
:class:`NotFound`, :class:`Conflict` or :class:`Invalid`. The CLI runs them in a
blocking transaction and prints the result; the HTTP API runs them on the database's
threads (``Database.read``/``Database.write``) and answers JSON or a problem document.
Password hashing and blob reads are the caller's, off the reactor, so nothing here
does CPU-heavy work inside a transaction.
"""

from __future__ import annotations

from .errors import AdminError, Conflict, Invalid, NotFound

__all__ = ["AdminError", "Conflict", "Invalid", "NotFound"]
