"""Command lines out of received bytes, read by offset.

:class:`LineBuffer` keeps the bytes received and not yet consumed, and the offset of
the first unread one. Reading a line only slices the line itself; the unread rest is
copied at most once per received chunk (when the next chunk arrives), never once per
line, so a read holding thousands of pipelined commands costs linear time.
"""

from __future__ import annotations

__all__ = ["LineBuffer", "TOO_LONG"]


class _TooLong:
    """The marker :meth:`LineBuffer.next_line` returns for a line over the limit."""

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = _TooLong()


class LineBuffer:
    """Received bytes, consumed line by line (lines end at LF; a CR before it is dropped).

    A line longer than the limit given to :meth:`next_line` is reported once as
    :data:`TOO_LONG`, as soon as it is known to be too long, and its bytes are dropped
    up to and including its LF, also while they are still arriving: the buffer never
    holds more than the limit plus one received chunk.
    """

    __slots__ = ("_data", "_pos", "_discarding")

    def __init__(self) -> None:
        self._data = b""
        self._pos = 0
        self._discarding = False

    def __len__(self) -> int:
        """Octets received and not yet consumed."""
        return len(self._data) - self._pos

    @property
    def discarding(self) -> bool:
        """Whether a line over the limit is being dropped as it arrives."""
        return self._discarding

    def feed(self, data: bytes) -> None:
        """Append received bytes (dropping the consumed ones first)."""
        if self._pos:
            self._data = self._data[self._pos:] + data
            self._pos = 0
        elif self._data:
            self._data += data
        else:
            self._data = data

    def next_line(self, limit: int):
        """The next complete line without its line end; ``None`` when no complete line
        is buffered; :data:`TOO_LONG` once for a line of more than ``limit`` octets."""
        data, pos = self._data, self._pos
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                if self._discarding:
                    self.clear()
                    self._discarding = True
                elif len(data) - pos > limit:
                    self.clear()
                    self._discarding = True
                    return TOO_LONG
                else:
                    self._pos = pos
                return None
            start, pos = pos, nl + 1
            if self._discarding:
                self._discarding = False
                continue
            self._consumed(pos)
            if nl - start > limit:
                return TOO_LONG
            end = nl - 1 if nl > start and data[nl - 1] == 13 else nl
            return data[start:end]

    def peek(self, limit: int) -> bytes:
        """At most ``limit`` of the octets not yet consumed, left in place (the tag
        of a command line that may turn out too long)."""
        return self._data[self._pos:self._pos + limit]

    def take(self) -> bytes:
        """Everything not yet consumed (for a reader of raw octets, e.g. a body)."""
        rest = self._data[self._pos:] if self._pos else self._data
        self.clear()
        return rest

    def take_upto(self, limit: int) -> bytes:
        """At most ``limit`` of the octets not yet consumed (a literal's octets)."""
        data, pos = self._data, self._pos
        end = min(len(data), pos + limit)
        chunk = data[pos:end] if pos or end < len(data) else data
        self._consumed(end)
        return chunk

    def clear(self) -> None:
        """Drop everything buffered (STARTTLS, close)."""
        self._data, self._pos, self._discarding = b"", 0, False

    def _consumed(self, pos: int) -> None:
        if pos >= len(self._data):
            self._data, self._pos = b"", 0
        else:
            self._pos = pos
