"""Login throttling per client address (a sliding window, never an account lock-out).

After ``max_failures`` failed logins from one address within ``window`` seconds,
further attempts from that address fail fast — without checking the password — for
``block`` seconds. Accounts are never locked: the same user still logs in from other
addresses, so an attacker cannot lock a victim out. Protocols answer a throttled
attempt with a temporary code (POP3 ``-ERR [SYS/TEMP]``, SMTP ``454 4.7.0``).

State lives in memory of one process; with several processes each throttles on its
own (a client spread over N processes gets at most N times the budget).
"""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["AuthThrottle"]


class AuthThrottle:
    """Counts failed logins per client IP on ``clock`` (an IReactorTime)."""

    def __init__(self, clock=None, max_failures: int = 5, window: float = 300.0,
                 block: float = 300.0, max_tracked: int = 100_000):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.block = block
        self.max_tracked = max_tracked
        self._failures: OrderedDict[str, deque] = OrderedDict()
        self._blocked: dict[str, float] = {}

    def _now(self) -> float:
        return self.clock.seconds()

    def is_throttled(self, ip: str) -> bool:
        """True while ``ip`` must wait before trying again."""
        until = self._blocked.get(ip)
        if until is None:
            return False
        if self._now() >= until:
            del self._blocked[ip]
            return False
        return True

    def retry_after(self, ip: str) -> float:
        """Seconds until ``ip`` may try again (0 when not throttled)."""
        return max(0.0, self._blocked.get(ip, 0.0) - self._now()) if self.is_throttled(ip) \
            else 0.0

    def record_failure(self, ip: str) -> bool:
        """Count a failed login; True when ``ip`` is now throttled."""
        now = self._now()
        times = self._failures.pop(ip, None) or deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        self._failures[ip] = times          # most recent last (for eviction order)
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)
        if len(times) >= self.max_failures:
            self._blocked[ip] = now + self.block
            times.clear()
            return True
        return False

    def record_success(self, ip: str) -> None:
        """A successful login does not erase failures (that would reset an attacker's
        budget with any valid account); it is recorded for symmetry only."""
