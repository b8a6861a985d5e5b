"""QRESYNC (RFC 7162 §3.2): the parameters a client resynchronises with, and the
``VANISHED (EARLIER)`` set it is told.

``SELECT mbox (QRESYNC (uidvalidity modseq [known-uids] [(seq-set uid-set)]))`` and
``UID FETCH set items (CHANGEDSINCE modseq VANISHED)`` are parsed here. The UIDs
expunged since a modseq come from the store's tombstones; a folder keeps a bounded
number of them (:data:`~mailet_mta.storage.folder_changes.TOMBSTONE_LIMIT`), and when
the client's modseq is older than the oldest kept, the server answers as RFC 7162
§3.2.5.2 allows: every UID the client may know of (its known-uids, else every UID
below UIDNEXT) that is not in the folder now, a superset of what went. The client's
message sequence match data narrow that set: a pair whose sequence number still names
the same UID shows that nothing below that UID went.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice

from .errors import BadCommand
from .sequence import SequenceSet, parse_set

__all__ = ["QresyncParams", "parse_qresync", "parse_fetch_modifiers", "vanished_spans",
           "format_spans", "MAX_SEQ_MATCH_PAIRS"]

MAX_MODSEQ = 2**63 - 1
_MAX_UID = 2**32 - 1
# Pairs of message sequence match data looked at (RFC 7162 calls it a sample); more
# are ignored, which only makes a VANISHED (EARLIER) after a purge larger.
MAX_SEQ_MATCH_PAIRS = 100_000


@dataclass(frozen=True)
class QresyncParams:
    """SELECT's QRESYNC parameter: the client's ``uid_validity`` and ``modseq``, the
    UIDs it knows (a set without ``*``, or None: all) and its message sequence match
    data as (sequence numbers, UIDs) sets of equal size, or None."""

    uid_validity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


def _number(token, what: str, low: int, high: int) -> int:
    if not (isinstance(token, str) and token.isascii() and token.isdigit()
            and len(token) <= 20 and low <= int(token) <= high):
        raise BadCommand(f"QRESYNC: {what} is a number from {low} to {high}")
    return int(token)


def _set_without_star(token, what: str) -> SequenceSet:
    if not isinstance(token, str):
        raise BadCommand(f"QRESYNC: {what} is a sequence set")
    seqset = parse_set(token)
    if seqset.uses_star:
        raise BadCommand(f"QRESYNC: {what} may not use *")
    return seqset


def _count(seqset: SequenceSet) -> int:
    return sum(abs(a - b) + 1 for a, b in seqset.ranges)


def parse_qresync(token) -> QresyncParams:
    """The parenthesised list after ``QRESYNC`` (its tokens as the reader gives
    them); BadCommand when it is not ``(uidvalidity modseq [known-uids]
    [(known-sequence-set known-uid-set)])``."""
    if not isinstance(token, list) or not 2 <= len(token) <= 4:
        raise BadCommand("QRESYNC takes (uidvalidity modseq [known-uids] "
                         "[(sequence-set uid-set)])")
    validity = _number(token[0], "the UIDVALIDITY", 1, _MAX_UID)
    modseq = _number(token[1], "the mod-sequence", 1, MAX_MODSEQ)
    rest = token[2:]
    known = None
    if rest and not isinstance(rest[0], list):
        known = _set_without_star(rest.pop(0), "known-uids")
    seq_match = None
    if rest:
        match = rest.pop(0)
        if rest or not isinstance(match, list) or len(match) != 2:
            raise BadCommand("QRESYNC: the sequence match data are "
                             "(known-sequence-set known-uid-set)")
        seqs = _set_without_star(match[0], "the known-sequence-set")
        uids = _set_without_star(match[1], "the known-uid-set")
        if _count(seqs) != _count(uids):
            raise BadCommand("QRESYNC: the known-sequence-set and the known-uid-set "
                             "name different numbers of messages")
        seq_match = (seqs, uids)
    return QresyncParams(validity, modseq, known, seq_match)


def parse_fetch_modifiers(modifiers, uid: bool, qresync: bool) -> tuple[int, bool]:
    """FETCH's modifier list: ``(CHANGEDSINCE modseq [VANISHED])`` in any order →
    (modseq, whether VANISHED was asked). VANISHED is for UID FETCH after ENABLE
    QRESYNC, with CHANGEDSINCE (RFC 7162 §3.2.6)."""
    if not isinstance(modifiers, list) or not modifiers:
        raise BadCommand("the FETCH modifiers are (CHANGEDSINCE modseq [VANISHED])")
    since = None
    vanished = False
    words = iter(modifiers)
    for word in words:
        name = word.upper() if isinstance(word, str) else ""
        if name == "CHANGEDSINCE" and since is None:
            value = next(words, None)
            if not (isinstance(value, str) and value.isascii() and value.isdigit()
                    and len(value) <= 19 and int(value) <= MAX_MODSEQ):
                raise BadCommand("CHANGEDSINCE takes a mod-sequence")
            since = int(value)
        elif name == "VANISHED" and not vanished:
            vanished = True
        else:
            raise BadCommand("the FETCH modifiers are (CHANGEDSINCE modseq [VANISHED])")
    if since is None:
        raise BadCommand("VANISHED goes with CHANGEDSINCE")
    if vanished and not (uid and qresync):
        raise BadCommand("VANISHED is for UID FETCH after ENABLE QRESYNC")
    return since, vanished


def _pairs(seq_match: tuple[SequenceSet, SequenceSet]) -> Iterator[tuple[int, int]]:
    def numbers(seqset: SequenceSet):
        return chain.from_iterable(
            range(a, b + 1) if a <= b else range(a, b - 1, -1) for a, b in seqset.ranges)
    seqs, uids = seq_match
    return islice(zip(numbers(seqs), numbers(uids)), MAX_SEQ_MATCH_PAIRS)


def matched_floor(seq_match, uids: Sequence[int]) -> int:
    """The largest UID of the match data that still has the sequence number the
    client gave it (0: none): no message below it was expunged since."""
    floor = 0
    for seq, uid in _pairs(seq_match):
        if seq <= len(uids) and uids[seq - 1] == uid and uid > floor:
            floor = uid
    return floor


def vanished_spans(expunged: list[int] | None, present: Sequence[int], uid_next: int,
                   known: SequenceSet | None, seq_match=None) -> list[tuple[int, int]]:
    """The UIDs to tell as ``VANISHED (EARLIER)``, as ascending (first, last) spans.

    ``expunged``: the sorted UIDs the store's tombstones say went since the client's
    modseq, or None when they were purged; ``present`` the folder's UIDs now
    (ascending); ``known`` the client's UIDs (None: any below ``uid_next``). Without
    tombstones the answer is every known UID not present (above the floor the
    sequence match data prove), worked out by spans, never one UID at a time.
    """
    top = uid_next - 1
    wanted = known.resolved(top) if known is not None else [(1, top)]
    if expunged is not None:
        test = known.matcher(top) if known is not None else None
        return _spans(u for u in expunged if u <= top and (test is None or test(u)))
    floor = matched_floor(seq_match, present) if seq_match is not None else 0
    out: list[tuple[int, int]] = []
    for lo, hi in wanted:
        lo, hi = max(lo, floor + 1), min(hi, top)
        if lo > hi:
            continue
        i = bisect.bisect_left(present, lo)
        while lo <= hi:
            nxt = present[i] if i < len(present) else hi + 1
            if nxt > lo:
                out.append((lo, min(hi, nxt - 1)))
            lo = nxt + 1
            i += 1
    return out


def _spans(uids) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for uid in uids:
        if out and uid == out[-1][1] + 1:
            out[-1] = (out[-1][0], uid)
        elif not out or uid > out[-1][1]:
            out.append((uid, uid))
    return out


def format_spans(spans: list[tuple[int, int]]) -> bytes:
    """``1:3,7`` of ascending spans."""
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in spans)
