"""The read-ahead's own rules: what it plans, its bound, its mark and its expiry."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet import task

from mailet_mta.imap.read_ahead import (
    READ_AHEAD_MESSAGE,
    READ_AHEAD_OCTETS,
    READ_AHEAD_SECONDS,
    ReadAhead,
)
from mailet_mta.imap.selected import SelectedMailbox


def folder(sizes) -> SelectedMailbox:
    n = len(sizes)
    snapshot = SimpleNamespace(
        ids=[100 + i for i in range(n)], uids=list(range(1, n + 1)), sizes=sizes,
        dates=[0.0] * n, modseqs=[1] * n, flags=[frozenset()] * n,
        status=SimpleNamespace(uid_validity=1, uid_next=n + 1, highest_modseq=1))
    return SelectedMailbox("INBOX", snapshot, read_only=False)


def test_only_a_fetch_that_continues_the_last_one_plans_a_read_ahead():
    sel = folder([1000] * 10)
    ahead = ReadAhead(task.Clock().callLater)
    assert ahead.plan(sel, [0]) == []               # nothing fetched before
    assert ahead.plan(sel, [1]) == list(range(2, 10))
    assert ahead.plan(sel, [5]) == []               # a jump
    assert ahead.plan(sel, [6, 7]) == [8, 9]


def test_the_plan_stops_at_a_large_message_and_at_the_bound():
    sel = folder([1000, 1000, 1000, READ_AHEAD_MESSAGE + 1, 1000])
    ahead = ReadAhead(task.Clock().callLater)
    ahead.plan(sel, [0])
    assert ahead.plan(sel, [1]) == [2]
    sel = folder([60_000] * 9)                      # 4 of them fill the bound
    ahead = ReadAhead(task.Clock().callLater)
    ahead.plan(sel, [0])
    planned = ahead.plan(sel, [1])
    assert 0 < sum(sel.sizes[i] for i in planned) <= READ_AHEAD_OCTETS
    assert sum(sel.sizes[i] for i in range(2, 3 + len(planned))) > READ_AHEAD_OCTETS


def test_kept_octets_are_bounded_taken_once_and_all_or_nothing():
    ahead = ReadAhead(task.Clock().callLater)
    chunk = b"x" * (READ_AHEAD_OCTETS // 4)
    found = {mid: chunk for mid in range(1, 10)}
    ahead.keep(found, list(found), mark=7)
    assert len(ahead) == 4 and ahead.held == READ_AHEAD_OCTETS
    assert ahead.take([1, 9], 7) is None and len(ahead) == 4
    assert ahead.take([1, 2], 7) == [chunk, chunk]
    assert ahead.take([1], 7) is None and ahead.held == 2 * len(chunk)


def test_a_change_committed_since_the_read_drops_everything():
    ahead = ReadAhead(task.Clock().callLater)
    ahead.keep({1: b"one", 2: b"two"}, [1, 2], mark=3)
    assert ahead.take([1], 4) is None
    assert len(ahead) == 0 and ahead.held == 0


def test_what_is_kept_expires_after_the_last_read_that_added_to_it():
    clock = task.Clock()
    ahead = ReadAhead(clock.callLater)
    ahead.keep({1: b"one"}, [1], mark=0)
    clock.advance(READ_AHEAD_SECONDS - 1)
    ahead.keep({2: b"two"}, [2], mark=0)            # a new read: the clock restarts
    clock.advance(READ_AHEAD_SECONDS - 1)
    assert len(ahead) == 2
    clock.advance(1)
    assert len(ahead) == 0 and ahead.held == 0 and not clock.getDelayedCalls()


def test_clear_forgets_the_octets_and_the_run():
    sel = folder([1000] * 4)
    clock = task.Clock()
    ahead = ReadAhead(clock.callLater)
    ahead.plan(sel, [0])
    ahead.keep({101: b"x"}, [101], mark=0)
    ahead.clear()
    assert len(ahead) == 0 and not clock.getDelayedCalls()
    assert ahead.plan(sel, [1]) == []               # 1 no longer counts as the last
