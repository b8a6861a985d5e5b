"""Login throttling per client address (a sliding window, never an account lock-out).

A login first *reserves* a slot for its client address, on the reactor and before the
password is checked. The reservation is refused when the address is blocked, when it
already has ``max_concurrent`` checks in flight, or when its failures in the last
``window`` seconds plus its checks in flight reach ``max_failures``. So a burst of
parallel attempts gets at most ``max_failures`` passwords verified, not one per
connection. When ``max_failures`` failures pile up the address is refused for
``block`` seconds. Accounts are never locked: the same user still logs in from other
addresses, so an attacker cannot lock a victim out. Protocols answer a refused
attempt with a temporary code (SMTP ``454 4.7.0``, POP3 ``-ERR [SYS/TEMP]``).

Addresses are grouped as an attacker holds them: an IPv4-mapped IPv6 address
(``::ffff:192.0.2.1``) counts as its IPv4 address, and an IPv6 address counts as its
``/64`` (``ipv6_prefix``), since one host usually owns a whole /64. Every table is
bounded: entries expire with their window or block, and none holds more than
``max_tracked`` addresses (the oldest go first).

This object is one process's view. :mod:`.auth_failures` keeps the failures in the
shared database so that several processes on one PostgreSQL share one budget; the
:class:`~mailet_mta.storage.authenticator.Authenticator` combines the two.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["AuthThrottle", "Slot", "client_key", "replay_failures"]

BLOCKED = "blocked"
BUSY = "busy"


def client_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The throttling key of the textual address ``ip``: IPv4 as is, an IPv4-mapped
    IPv6 address as its IPv4 address, other IPv6 as its ``/ipv6_prefix`` network."""
    text = (ip or "").split("%", 1)[0].strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text[:64].lower()        # not an IP (a UNIX socket, a test transport)
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network((addr, ipv6_prefix), strict=False))
    return str(addr)


def replay_failures(times, now: float, max_failures: int, window: float,
                    block: float) -> tuple[int, float]:
    """``(failures in the window, blocked until)`` from failure times in order, by the
    same rule the in-memory throttle applies (used on the shared failure rows)."""
    recent: deque = deque()
    blocked_until = 0.0
    for at in times:
        if at < blocked_until:
            continue                     # refused attempts are never recorded anyway
        recent.append(at)
        while recent and recent[0] <= at - window:
            recent.popleft()
        if len(recent) >= max_failures:
            blocked_until = at + block
            recent.clear()
    in_window = sum(1 for at in recent if at > now - window)
    return in_window, blocked_until if blocked_until > now else 0.0


@dataclass
class Slot:
    """One reserved login check: its address key, how many checks of the same key were
    already in flight and how many failures this process counted when it was taken
    (together they are this process's share of the budget), the time, and why it was
    refused (or None)."""

    key: str
    ahead: int
    at: float
    failures: int = 0
    refused: str | None = None
    released: bool = False


class AuthThrottle:
    """Counts failed logins and logins in flight per client address on ``clock``."""

    def __init__(self, clock=None, max_failures: int = 5, window: float = 300.0,
                 block: float = 300.0, max_tracked: int = 100_000, max_concurrent: int = 5,
                 ipv6_prefix: int = 64):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.block = block
        self.max_tracked = max_tracked
        self.max_concurrent = max_concurrent
        self.ipv6_prefix = ipv6_prefix
        self.node = uuid.uuid4().hex[:16]     # tells this process's shared rows apart
        self._failures: OrderedDict[str, deque] = OrderedDict()   # least recent first
        self._blocked: OrderedDict[str, float] = OrderedDict()    # soonest end first
        self._in_flight: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg, clock=None) -> AuthThrottle:
        """The throttle an ``authThrottle`` section describes."""
        throttle = cls(clock)
        throttle.reconfigure(cfg)
        return throttle

    def reconfigure(self, cfg) -> None:
        """Take the limits of a reloaded ``authThrottle`` section; counts are kept."""
        self.max_failures, self.window, self.block = cfg.max_failures, cfg.window, cfg.block
        self.max_tracked, self.max_concurrent = cfg.max_tracked, cfg.max_concurrent_per_ip
        self.ipv6_prefix = cfg.ipv6_prefix

    def _now(self) -> float:
        return self.clock.seconds()

    def key(self, ip: str) -> str:
        return client_key(ip, self.ipv6_prefix)

    # -- expiry ----------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        """Drop blocks that ended and failure lists whose newest entry left the window."""
        while self._blocked:
            key, until = next(iter(self._blocked.items()))
            if until > now:
                break
            del self._blocked[key]
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times and times[-1] > now - self.window:
                break
            del self._failures[key]

    def _recent_failures(self, key: str, now: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times)

    # -- queries -----------------------------------------------------------------------
    def is_throttled(self, ip: str) -> bool:
        """True while ``ip`` is blocked."""
        now = self._now()
        self._expire(now)
        return self._blocked.get(self.key(ip), 0.0) > now

    # -- a login's life: reserve, then release -------------------------------------------
    def reserve(self, ip: str) -> Slot:
        """Take a slot for one password check from ``ip``; ``slot.refused`` says why not."""
        now = self._now()
        self._expire(now)
        key = self.key(ip)
        busy = self._in_flight.get(key, 0)
        slot = Slot(key, busy, now, self._recent_failures(key, now))
        if self._blocked.get(key, 0.0) > now:
            slot.refused = BLOCKED
        elif busy >= self.max_concurrent or (
                not busy and len(self._in_flight) >= self.max_tracked):
            slot.refused = BUSY
        elif slot.failures + busy >= self.max_failures:
            slot.refused = BLOCKED
        else:
            self._in_flight[key] = busy + 1
        return slot

    def release(self, slot: Slot, failed: bool) -> bool:
        """End the check of ``slot``; count it when ``failed``. True when its address
        is blocked now."""
        if slot.refused is None and not slot.released:
            slot.released = True
            left = self._in_flight.get(slot.key, 1) - 1
            if left > 0:
                self._in_flight[slot.key] = left
            else:
                self._in_flight.pop(slot.key, None)
        if failed:
            return self._record(slot.key, self._now())
        return self._blocked.get(slot.key, 0.0) > self._now()

    def block_until(self, key: str, until: float) -> None:
        """Block ``key`` until ``until`` (a block another process recorded)."""
        if until > self._blocked.get(key, 0.0):
            self._blocked.pop(key, None)
            self._blocked[key] = until
            self._bound(self._blocked)

    def record_failure(self, ip: str) -> bool:
        """Count a failed login from ``ip`` outside a reservation; True when blocked."""
        return self._record(self.key(ip), self._now())

    def _record(self, key: str, now: float) -> bool:
        self._expire(now)
        times = self._failures.pop(key, None) or deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        self._failures[key] = times          # most recent last (expiry and eviction order)
        self._bound(self._failures)
        if len(times) >= self.max_failures:
            del self._failures[key]          # the block takes over from the count
            self.block_until(key, now + self.block)
            return True
        return False

    def _bound(self, table: OrderedDict) -> None:
        while len(table) > self.max_tracked:
            table.popitem(last=False)

    def tracked(self) -> dict[str, int]:
        """Sizes of the tables (for tests and status): failures, blocked, in_flight."""
        return {"failures": len(self._failures), "blocked": len(self._blocked),
                "in_flight": len(self._in_flight)}
