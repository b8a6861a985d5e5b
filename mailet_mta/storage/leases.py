"""Leases: a spool row or a mailbox held by one node or session until a deadline.

``LeaseLost`` is defined once, in the mail-store interface (retrieval sessions see it
there); the spool raises the same class."""

from __future__ import annotations

from ..mailstore import LeaseLost

__all__ = ["LeaseLost"]
