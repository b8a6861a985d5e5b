"""IMAP sequence sets (RFC 3501 §9 ``sequence-set``): message numbers and UIDs.

``1:3,7,9:*`` names messages by sequence number or by UID; ``*`` is the largest one in
use. A range's ends may come in either order (``5:2`` is ``2:5``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import BadCommand

__all__ = ["SequenceSet", "parse_set", "format_uid_set", "MAX_RANGES", "STAR"]

# A set has at most this many comma-separated members; more is refused as BAD. The
# command line limit bounds a set already; this bounds the work one set can ask for.
MAX_RANGES = 100_000
STAR = 0                    # stands for "*" in a range's ends (0 is no nz-number)
_MAX_NUMBER = 2**32 - 1     # nz-number is a 32-bit unsigned (RFC 3501 §9)

_MEMBER = re.compile(r"(\*|[1-9][0-9]{0,9})(?::(\*|[1-9][0-9]{0,9}))?")


@dataclass(frozen=True)
class SequenceSet:
    """A parsed sequence set: ``ranges`` as (first, last) pairs in the client's order,
    ``STAR`` (0) where the client wrote ``*``."""

    ranges: tuple[tuple[int, int], ...]

    def __str__(self) -> str:
        def one(n: int) -> str:
            return "*" if n == STAR else str(n)
        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)

    @property
    def uses_star(self) -> bool:
        return any(STAR in r for r in self.ranges)

    def resolved(self, star: int) -> list[tuple[int, int]]:
        """The ranges with ``*`` as ``star``, each low..high, sorted and merged (no
        number twice)."""
        spans = sorted((min(a or star, b or star), max(a or star, b or star))
                       for a, b in self.ranges)
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, number: int, star: int) -> bool:
        """Whether ``number`` is in the set when ``*`` is ``star`` (SEARCH uses this;
        resolve once with :meth:`matcher` for many numbers)."""
        return self.matcher(star)(number)

    def matcher(self, star: int) -> _Matcher:
        """A membership test for many numbers, ``*`` being ``star``: O(log ranges)."""
        return _Matcher(self.resolved(star))

    def indexes(self, largest: int) -> list[range]:
        """Message sequence numbers (1-based) in the set in a mailbox of ``largest``
        messages (``*`` = ``largest``), as ascending non-overlapping ranges; numbers past
        ``largest`` are left out (see :meth:`out_of_range`)."""
        if largest <= 0:
            return []
        return [range(lo, min(hi, largest) + 1)
                for lo, hi in self.resolved(largest) if lo <= largest]

    def out_of_range(self, largest: int) -> bool:
        """Whether the set names a sequence number above ``largest`` (or any number at
        all in an empty mailbox): RFC 3501 §9 calls that an invalid set."""
        if largest <= 0:
            return True
        return any(max(a or largest, b or largest) > largest for a, b in self.ranges)

    def uid_indexes(self, uids: Sequence[int]) -> list[int]:
        """0-based positions in ``uids`` (ascending, e.g. an ``array('q')``) of the UIDs
        in the set. ``*`` is the largest UID present, so ``n:*`` with ``n`` above it
        still names the last message (RFC 3501 §6.4.8). O(ranges · log len(uids))
        plus the size of the answer."""
        if not uids:
            return []
        out: list[int] = []
        for lo, hi in self.resolved(uids[-1]):
            start = bisect.bisect_left(uids, lo)
            end = bisect.bisect_right(uids, hi, start)
            out.extend(range(start, end))
        return out


class _Matcher:
    __slots__ = ("_lows", "_highs")

    def __init__(self, spans: list[tuple[int, int]]):
        self._lows = [lo for lo, _ in spans]
        self._highs = [hi for _, hi in spans]

    def __call__(self, number: int) -> bool:
        i = bisect.bisect_right(self._lows, number) - 1
        return i >= 0 and number <= self._highs[i]


def parse_set(text: str) -> SequenceSet:
    """Parse a sequence-set atom such as ``1:3,7,9:*``; BadCommand when it is not one."""
    if not isinstance(text, str):
        raise BadCommand("expected a sequence set such as 1:3,7,9:*")
    members = text.split(",")
    if len(members) > MAX_RANGES:
        raise BadCommand(f"sequence set has more than {MAX_RANGES} members")
    ranges = []
    for member in members:
        m = _MEMBER.fullmatch(member)
        if not m:
            raise BadCommand(f"invalid sequence set {text[:60]!r}: expected numbers, "
                             f"ranges n:m and * separated by commas")
        first = STAR if m.group(1) == "*" else int(m.group(1))
        last = first if m.group(2) is None else (STAR if m.group(2) == "*" else int(m.group(2)))
        if first > _MAX_NUMBER or last > _MAX_NUMBER:
            raise BadCommand(f"invalid sequence set {text[:60]!r}: number above 4294967295")
        ranges.append((first, last))
    return SequenceSet(tuple(ranges))


def format_uid_set(uids: Iterable[int]) -> str:
    """The shortest set naming exactly ``uids``: ``1:3,7,9:10`` (APPENDUID, COPYUID)."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)
