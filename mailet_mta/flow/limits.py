"""Connections per listener and per client address (James's ``connectionLimit`` and
``connectionLimitPerIP``)."""

from __future__ import annotations

from collections import Counter

__all__ = ["ConnectionLimits"]


class ConnectionLimits:
    """Counts the open sessions of one listener, in total and per client address.

    The limits are read from the listener's configuration at every check, so a reload
    applies to the next connection.
    """

    def __init__(self) -> None:
        self.total = 0
        self._per_ip: Counter[str] = Counter()

    def refusal(self, ip: str, config) -> str | None:
        """Why a new connection from ``ip`` is refused (``None``: it is admitted)."""
        limit = config.connection_limit
        if limit and self.total >= limit:
            return "too many connections"
        per_ip = config.connection_limit_per_ip
        if per_ip and self._per_ip[ip] >= per_ip:
            return f"too many connections from {ip}"
        return None

    def opened(self, ip: str) -> None:
        self.total += 1
        self._per_ip[ip] += 1

    def closed(self, ip: str) -> None:
        self.total -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
