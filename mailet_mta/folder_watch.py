"""Telling IMAP sessions (and anyone subscribed) that a folder changed, whoever
changed it: this process, or another one sharing the database."""

from __future__ import annotations

import sqlite3
import threading
import weakref

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from .folder_views import status_of
from .mailstore import FolderStatus, IFolderSubscription
from .storage.folder_changes import NOTIFY_CHANNEL

__all__ = ["FolderWatcher", "SQLiteChangeFeed", "PostgresChangeFeed", "change_feed",
           "changed_here"]

log = Logger(namespace="mailet_mta.retrieval")

# The watchers of this process that watch something, told of this process's deliveries.
_ACTIVE: weakref.WeakSet[FolderWatcher] = weakref.WeakSet()


def changed_here(user: str) -> None:
    """A change of ``user``'s folders was committed by this process outside the
    store (a delivery): every watcher of this process reads that user's watched
    folders at once, without waiting for its feed or interval. Reactor thread only."""
    for watcher in list(_ACTIVE):
        watcher.user_changed(user)


@implementer(IFolderSubscription)
class _Subscription:
    def __init__(self, watcher: FolderWatcher, key, listener):
        self.watcher, self.key, self.listener = watcher, key, listener

    def cancel(self) -> None:
        self.watcher.unsubscribe(self)


class FolderWatcher:
    """Tells subscribers when a folder's state changes, whoever changed it.

    While anything is subscribed, the states of the watched folders are read in one
    read (one query for their heads, a count only for those that changed) and
    compared with the last ones: at once for a change made through this store, when
    the ``feed`` says the database changed (another process, or a delivery in this
    one), and every ``interval`` seconds in any case. One read runs at a time; what is
    asked meanwhile is read right after it, together. At most ``max_watched`` folders
    are watched (a further subscribe raises OverflowError).

    ``read_states(keys, last)`` → Deferred {key: ``mailbox_state``-shaped tuple or
    None}, ``last`` being the states known so far. ``feed`` (optional) has
    ``start(on_change)`` and ``stop()``; it calls ``on_change(box_ids or None)`` on
    the reactor thread (None: something changed, read all).
    """

    def __init__(self, read_states, interval: float = 5.0, max_watched: int = 10_000,
                 clock=None, feed=None):
        self.read_states = read_states
        self.interval = interval
        self.max_watched = max_watched
        self.clock = clock
        self.feed = feed
        self._subscribers: dict[tuple, list] = {}
        self._last: dict[tuple, object] = {}
        self._unread: set[tuple] = set()
        self._loop: task.LoopingCall | None = None
        self._reading: defer.Deferred | None = None
        self._asked: set[tuple] = set()
        self._waiting: list[defer.Deferred] = []
        self.reads = 0

    def subscribe(self, user: str, folder: str, listener) -> _Subscription:
        key = (user, folder)
        if key not in self._subscribers and len(self._subscribers) >= self.max_watched:
            raise OverflowError(f"already watching {self.max_watched} folders")
        sub = _Subscription(self, key, listener)
        self._subscribers.setdefault(key, []).append(sub)
        if key not in self._last:
            self._last[key] = None
            self._unread.add(key)
            self.poll_now([key])
        if self._loop is None:
            self._loop = task.LoopingCall(self._poll)
            if self.clock is not None:
                self._loop.clock = self.clock
            self._loop.start(self.interval, now=False).addErrback(
                lambda f: log.failure("folder watcher stopped", f))
            if self.feed is not None:
                self.feed.start(self.changed)
            _ACTIVE.add(self)
        return sub

    def unsubscribe(self, sub: _Subscription) -> None:
        subs = self._subscribers.get(sub.key, [])
        if sub in subs:
            subs.remove(sub)
        if not subs and sub.key in self._subscribers:
            del self._subscribers[sub.key]
            self._last.pop(sub.key, None)
            self._unread.discard(sub.key)
        if not self._subscribers and self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None
            _ACTIVE.discard(self)
            if self.feed is not None:
                self.feed.stop()

    def changed(self, box_ids=None) -> None:
        """The feed's news: ``box_ids`` changed (None: anything may have)."""
        if box_ids is None:
            self._poll()
        else:
            self.poll_boxes(box_ids)

    def user_changed(self, user: str) -> defer.Deferred:
        """Poll the watched folders of ``user``."""
        return self.poll_now([key for key in self._subscribers if key[0] == user])

    def poll_boxes(self, box_ids) -> defer.Deferred:
        """Poll the watched folders whose mailbox id is in ``box_ids``, and those not
        known to exist (one of the ids may be their creation)."""
        ids = set(box_ids)
        return self.poll_now([key for key, state in self._last.items()
                              if state is None or state[0] in ids])

    def _poll(self):
        return self.poll_now(list(self._subscribers))

    def poll_now(self, keys) -> defer.Deferred:
        """Read the states of ``keys`` (those watched) and tell what changed; fires
        once they are read."""
        keys = [k for k in keys if k in self._subscribers]
        if not keys:
            return defer.succeed(None)
        self._asked.update(keys)
        waiter: defer.Deferred = defer.Deferred()
        self._waiting.append(waiter)
        if self._reading is None:
            self._read_asked()
        return waiter

    def _read_asked(self) -> None:
        keys, self._asked = [k for k in self._asked if k in self._subscribers], set()
        waiting, self._waiting = self._waiting, []
        self.reads += 1
        known = {key: self._last.get(key) for key in keys}
        d = self.read_states(keys, known).addCallback(self._compare)
        d.addErrback(lambda f: log.failure("reading folder states failed", f))
        self._reading = d

        def done(_):
            self._reading = None
            for waiter in waiting:
                waiter.callback(None)
            if self._asked:
                self._read_asked()
        d.addCallback(done)

    def _compare(self, states) -> None:
        for key, state in states.items():
            if key not in self._subscribers:
                continue
            if key in self._unread:
                self._unread.discard(key)
                self._last[key] = state
                continue
            if state == self._last.get(key):
                continue
            self._last[key] = state
            # None: the folder was deleted or renamed away
            self._tell(key, None if state is None else status_of(key[1], state))

    def _tell(self, key, status: FolderStatus | None) -> None:
        for sub in list(self._subscribers.get(key, ())):
            try:
                sub.listener(status)
            except Exception:  # noqa: BLE001 - one listener's bug must not stop the others
                log.failure("a folder listener failed")


class _FeedThread:
    """A daemon thread that runs while anything is watched and calls ``on_change`` on
    the reactor thread; stopped by an event it checks at least every half second."""

    name = "folder-feed"

    def __init__(self, reactor=None):
        self._reactor = reactor
        self._stop: threading.Event | None = None
        self._on_change = None

    def start(self, on_change) -> None:
        if self._stop is not None:
            return
        from twisted.internet import reactor as default_reactor

        self._reactor = self._reactor or default_reactor
        self._on_change = on_change
        self._stop = threading.Event()
        threading.Thread(target=self._guarded, args=(self._stop,), name=self.name,
                         daemon=True).start()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    def _signal(self, box_ids) -> None:
        self._reactor.callFromThread(self._on_change, box_ids)

    def _guarded(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run(stop)
            except Exception:  # noqa: BLE001 - the database is away: retry in a second
                log.failure("the folder change feed failed; retrying")
                stop.wait(1.0)

    def run(self, stop: threading.Event) -> None:
        raise NotImplementedError


class SQLiteChangeFeed(_FeedThread):
    """SQLite: ``PRAGMA data_version`` on a connection of its own every ``interval``
    seconds — it changes when any other connection (this process's writer, or
    another process) commits. A change means "read the watched folders' heads"."""

    name = "folder-feed-sqlite"

    def __init__(self, path: str, interval: float = 0.1, reactor=None):
        super().__init__(reactor)
        self.path, self.interval = path, interval

    def run(self, stop: threading.Event) -> None:
        conn = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not stop.wait(self.interval):
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    self._signal(None)
        finally:
            conn.close()


class PostgresChangeFeed(_FeedThread):
    """PostgreSQL: ``LISTEN mailet_mta_folders`` on a connection of its own; every
    change of a folder sends its mailbox id (:mod:`~.storage.folder_changes`)."""

    name = "folder-feed-pg"

    def __init__(self, conninfo: str, reactor=None):
        super().__init__(reactor)
        self.conninfo = conninfo

    def run(self, stop: threading.Event) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._signal(None)            # what changed before LISTEN took effect
            while not stop.is_set():
                # each notification is passed on as it comes; the watcher gathers
                # those that arrive while it reads into its next read
                for note in conn.notifies(timeout=0.5):
                    if note.payload.isdigit():
                        self._signal((int(note.payload),))
                    if stop.is_set():
                        break


def change_feed(engine):
    """The change feed for the database behind ``engine`` (None for an in-memory
    SQLite database: the watcher then polls on its interval only)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        path = url.database
        return SQLiteChangeFeed(path) if path and path != ":memory:" else None
    if url.get_backend_name() == "postgresql":
        return PostgresChangeFeed(url.set(drivername="postgresql")
                                  .render_as_string(hide_password=False))
    return None
