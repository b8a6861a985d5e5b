"""The threads that run mailets' CPU-heavy work away from the reactor.

Mailets and matchers run on the reactor thread, between the SMTP and POP3 sessions.
Work whose cost grows with the message — a MIME parse, rebuilding parts, serialising
a changed message, building a notice around the original — goes through
``IMailetContext.run_in_worker``, which runs it on this small pool.

Why threads, and why two: profiles of the stdlib ``email`` package on hostile shapes
(pyinstrument) show pure-Python work — 0.1–0.3 ms per MIME part in
``FeedParser._new_message`` and the header parsing behind it, 0.5 s for a plain 20 MB
message. In a thread that work gives the GIL back at every switch interval (5 ms),
except inside one C-level step on a whole body (a decode or join of 20 MB: tens of
ms), so the reactor keeps answering: with AddFooter on 20 MB of text the worst NOOP
of another session took 0.2–0.3 s, against 1.2 s with the same work on the reactor.
A process pool would have to copy every message and could not edit the ``Mail`` in
place. More than
two threads would only take turns at the same GIL. The work is bounded too: each
running mail awaits at most one call at a time (so at most ``spoolmanager.threads``
calls wait here), and every parse stops at the MIME limits.
"""

from __future__ import annotations

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

WORKER_THREADS = 2

_pool: ThreadPool | None = None


def _started_pool(reactor) -> ThreadPool:
    global _pool
    if _pool is None:
        _pool = ThreadPool(minthreads=0, maxthreads=WORKER_THREADS, name="mailet-workers")
        _pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", _stop_pool)
    return _pool


def _stop_pool() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.stop()


def run_in_worker(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a mailet worker thread: a Deferred of its result,
    fired on the reactor thread."""
    from twisted.internet import reactor
    return threads.deferToThreadPool(reactor, _started_pool(reactor), fn, *args, **kwargs)
