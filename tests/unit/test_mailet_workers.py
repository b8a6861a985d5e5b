"""The mailet worker threads: CPU work off the reactor, at most two at a time."""

from __future__ import annotations

import threading
import time

import pytest_twisted
from twisted.internet import defer

from mailet_mta.spool import mailet_workers


@pytest_twisted.ensureDeferred
async def test_work_runs_off_the_reactor_thread_two_calls_at_a_time():
    reactor_thread = threading.get_ident()
    lock = threading.Lock()
    active, peak, threads = [0], [0], set()

    def work(n):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            threads.add(threading.get_ident())
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return n * n

    fired_on = []

    def record(result):
        fired_on.append(threading.get_ident())
        return result

    calls = [mailet_workers.run_in_worker(work, n).addCallback(record) for n in range(6)]
    results = await defer.gatherResults(calls)
    assert results == [n * n for n in range(6)]
    assert peak[0] == mailet_workers.WORKER_THREADS == 2
    assert reactor_thread not in threads
    assert set(fired_on) == {reactor_thread}
