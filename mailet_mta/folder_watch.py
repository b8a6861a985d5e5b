"""Telling IMAP sessions (and anyone subscribed) that a folder changed, whoever
changed it: this process, or another one sharing the database."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from .folder_views import status_of
from .mailstore import FolderStatus, IFolderSubscription

__all__ = ["FolderWatcher"]

log = Logger(namespace="mailet_mta.retrieval")


@implementer(IFolderSubscription)
class _Subscription:
    def __init__(self, watcher: FolderWatcher, key, listener):
        self.watcher, self.key, self.listener = watcher, key, listener

    def cancel(self) -> None:
        self.watcher.unsubscribe(self)


class FolderWatcher:
    """Tells subscribers when a folder's state changes, whoever changed it.

    While anything is subscribed, the states of the watched folders are read every
    ``interval`` seconds in one read (one indexed row and a count per folder) and
    compared with the last ones; a change made through this store is polled at once.
    At most ``max_watched`` folders are watched (a further subscribe raises
    OverflowError). ``read_states(keys)`` → Deferred {key: mailbox_state or None}.
    """

    def __init__(self, read_states, interval: float = 5.0, max_watched: int = 10_000,
                 clock=None):
        self.read_states = read_states
        self.interval = interval
        self.max_watched = max_watched
        self.clock = clock
        self._subscribers: dict[tuple, list] = {}
        self._last: dict[tuple, object] = {}
        self._loop: task.LoopingCall | None = None

    def subscribe(self, user: str, folder: str, listener) -> _Subscription:
        key = (user, folder)
        if key not in self._subscribers and len(self._subscribers) >= self.max_watched:
            raise OverflowError(f"already watching {self.max_watched} folders")
        sub = _Subscription(self, key, listener)
        self._subscribers.setdefault(key, []).append(sub)
        if key not in self._last:
            self._last[key] = None
            self.poll_now([key], tell=False)
        if self._loop is None:
            self._loop = task.LoopingCall(self._poll)
            if self.clock is not None:
                self._loop.clock = self.clock
            self._loop.start(self.interval, now=False).addErrback(
                lambda f: log.failure("folder watcher stopped", f))
        return sub

    def unsubscribe(self, sub: _Subscription) -> None:
        subs = self._subscribers.get(sub.key, [])
        if sub in subs:
            subs.remove(sub)
        if not subs and sub.key in self._subscribers:
            del self._subscribers[sub.key]
            self._last.pop(sub.key, None)
        if not self._subscribers and self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None

    def poll_boxes(self, box_ids) -> defer.Deferred:
        """Poll the watched folders whose mailbox id is in ``box_ids`` (changed here)."""
        ids = set(box_ids)
        return self.poll_now([key for key, state in self._last.items()
                              if state is not None and state[0] in ids])

    def _poll(self):
        return self.poll_now(list(self._subscribers))

    def poll_now(self, keys, tell: bool = True) -> defer.Deferred:
        """Read the states of ``keys`` (those watched) and tell what changed."""
        keys = [k for k in keys if k in self._subscribers]
        if not keys:
            return defer.succeed(None)

        def compare(states):
            for key, state in states.items():
                if key not in self._subscribers or state == self._last.get(key):
                    continue
                self._last[key] = state
                if tell:        # None: the folder was deleted or renamed away
                    self._tell(key, None if state is None else status_of(key[1], state))
        d = self.read_states(keys).addCallback(compare)
        d.addErrback(lambda f: log.failure("reading folder states failed", f))
        return d

    def _tell(self, key, status: FolderStatus | None) -> None:
        for sub in list(self._subscribers.get(key, ())):
            try:
                sub.listener(status)
            except Exception:  # noqa: BLE001 - one listener's bug must not stop the others
                log.failure("a folder listener failed")
