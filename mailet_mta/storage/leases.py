"""Leases: a spool row or a mailbox held by one node or session until a deadline."""

from __future__ import annotations

__all__ = ["LeaseLost"]


class LeaseLost(Exception):
    """A lease this node or session held has expired and another one took the row or
    the mailbox over: the work done under it must not be committed."""
