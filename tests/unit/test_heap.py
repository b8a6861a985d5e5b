"""The server's garbage-collector settings once it listens (mailet_mta.heap)."""

import gc

import pytest

from mailet_mta import heap


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_the_start_up_heap_and_raises_the_young_threshold(restored_gc):
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    kept = [object() for _ in range(10)]   # alive at start-up, like the pipeline
    heap.settle()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)


def test_a_young_collection_no_longer_walks_the_frozen_heap(restored_gc):
    gc.unfreeze()
    heap.settle()
    frozen = gc.get_freeze_count()
    assert frozen > 1000                    # pytest's own heap, at least
    assert len(gc.get_objects(2)) < frozen  # the oldest generation is nearly empty
