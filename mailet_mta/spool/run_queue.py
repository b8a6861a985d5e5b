"""The in-memory queue of this node's runnable mails.

The intake puts mails here once their spool rows are committed; the runner's poll puts
here the mails it claimed. The runner takes them in arrival order. The queue also
knows which mails are *in flight* on this node — queued or running — since only
their leases are renewed: a row this node still holds but no longer runs (its removal
or its failure could not be written) lets its lease run out, and the next poll of
any node takes it back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..mail import Mail


class RunQueue:
    """Runnable mails in arrival order, and the names of the mails in flight."""

    def __init__(self, clock):
        self.clock = clock
        self._mails: deque[Mail] = deque()
        self._arriving: list[Mail] = []       # committed, handed over on the next turn
        self._consumer: Callable[[], None] = lambda: None
        self.in_flight: set[str] = set()

    def subscribe(self, consumer: Callable[[], None]) -> None:
        """Call ``consumer()`` whenever mails become runnable (the runner's pump)."""
        self._consumer = consumer

    def put(self, mail: Mail) -> None:
        """Make ``mail`` runnable now."""
        self.in_flight.add(mail.name)
        self._mails.append(mail)
        self._consumer()

    def hand_over(self, mail: Mail) -> None:
        """Make ``mail`` runnable on the next reactor turn (after the reply that
        accepted it is written, so the log reads in order)."""
        self.in_flight.add(mail.name)
        self._arriving.append(mail)
        if len(self._arriving) == 1:
            self.clock.callLater(0, self._arrive)

    def _arrive(self) -> None:
        arrived, self._arriving = self._arriving, []
        self._mails.extend(arrived)
        self._consumer()

    def take(self) -> Mail:
        """The oldest runnable mail (IndexError when there is none)."""
        return self._mails.popleft()

    def finished(self, mail: Mail) -> None:
        """``mail``'s run on this node is over: its lease is no longer renewed."""
        self.in_flight.discard(mail.name)

    def clear(self) -> None:
        """Forget the queued mails (stopping: their rows stay in the spool)."""
        for mail in self._mails:
            self.in_flight.discard(mail.name)
        self._mails.clear()

    @property
    def queued(self) -> int:
        """Mails waiting to run, including those arriving on the next turn."""
        return len(self._mails) + len(self._arriving)

    @property
    def runnable(self) -> bool:
        """True when a mail can be taken now."""
        return bool(self._mails)
