"""The garbage collector's settings for a long-running server process.

Per-mail objects are freed by reference counting; the cyclic collector mostly walks
what the process built at start-up (the configuration, the pipeline, Twisted, the
SQL statements compiled once) again and again. A full collection of that heap on the
reactor thread is a pause every connection waits through, and it is what made the
slowest replies at 16 connections. Once the server listens, :func:`settle` collects
once and moves everything alive into the permanent generation (``gc.freeze()``:
never scanned again), and raises the first threshold so that young collections are
fewer (each still finds the same per-mail garbage, as cycles are rare on that path).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000      # allocations between young collections (Python: 700)


def settle() -> None:
    """Collect once, freeze what survives and raise the young threshold."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
