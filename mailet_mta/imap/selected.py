"""The selected mailbox as one session sees it (RFC 3501 §2.3.1.2, §7.4.1).

Message sequence numbers are positions in parallel arrays in UID order. The session
changes its own copy as it tells the client: new messages are appended when it sends
``EXISTS``, expunged ones removed when it sends ``EXPUNGE``, so the numbers the client
holds and the ones here never differ.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import compress

from ..mailstore import SYSTEM_FLAGS

__all__ = ["SelectedMailbox"]


class SelectedMailbox:
    """The messages of the selected folder in this session: ``ids``, ``uids``,
    ``sizes``, ``modseqs`` (``array('q')``), ``dates`` (``array('d')``) and ``flags``
    (a list of frozensets), parallel and in UID order; ``recent`` the UIDs this
    session reports as ``\\Recent`` (those that arrived while it had the folder
    selected); ``dirty`` when the store said the folder changed and the change is
    not told yet."""

    def __init__(self, name: str, snapshot, read_only: bool):
        self.name = name
        self.read_only = read_only
        self.ids = array("q", snapshot.ids)
        self.uids = array("q", snapshot.uids)
        self.sizes = array("q", snapshot.sizes)
        self.dates = array("d", snapshot.dates)
        self.modseqs = array("q", snapshot.modseqs)
        self.flags: list[frozenset] = list(snapshot.flags)
        status = snapshot.status
        self.uid_validity = status.uid_validity
        self.uid_next = status.uid_next
        self.highest_modseq = status.highest_modseq
        self.recent: set[int] = set()
        self.dirty = False
        self.subscription = None

    def __len__(self) -> int:
        return len(self.ids)

    def keywords(self) -> set[str]:
        """The keywords (non-system flags) some message of the folder has."""
        out: set[str] = set()
        for flags in set(self.flags):
            out |= flags
        return out - SYSTEM_FLAGS - {"\\Recent"}

    def first_unseen(self) -> int:
        """The sequence number of the first message without ``\\Seen`` (0: none)."""
        for i, flags in enumerate(self.flags):
            if "\\Seen" not in flags:
                return i + 1
        return 0

    def index_of_uid(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def index_by_id(self, message_ids) -> dict[int, int]:
        """{message id: index} of ``message_ids`` that are in the folder."""
        wanted = set(message_ids)
        return {mid: i for i, mid in enumerate(self.ids) if mid in wanted}

    def is_recent(self, index: int) -> bool:
        return self.uids[index] in self.recent

    def remove(self, indexes) -> list[int]:
        """Remove the messages at ``indexes``; the sequence numbers to report as
        ``EXPUNGE``, in the order to send them (each valid when sent: descending)."""
        doomed = sorted(set(indexes))
        if not doomed:
            return []
        keep = bytearray(b"\x01") * len(self.ids)
        for i in doomed:
            keep[i] = 0
            self.recent.discard(self.uids[i])
        for name in ("ids", "uids", "sizes", "modseqs"):
            setattr(self, name, array("q", compress(getattr(self, name), keep)))
        self.dates = array("d", compress(self.dates, keep))
        self.flags = list(compress(self.flags, keep))
        return [i + 1 for i in reversed(doomed)]

    def append(self, message_id: int, uid: int, size: int, date: float, modseq: int,
               flags: frozenset) -> None:
        self.ids.append(message_id)
        self.uids.append(uid)
        self.sizes.append(size)
        self.dates.append(date)
        self.modseqs.append(modseq)
        self.flags.append(flags)
        self.uid_next = max(self.uid_next, uid + 1)
