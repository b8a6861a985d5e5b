"""Sending a message for RETR/TOP: chunked, byte-stuffed, with flow control.

Byte-stuffing (RFC 1939 §3) doubles a '.' at the start of **every** line — the first
line of the message and lines that begin exactly at a chunk boundary included — so a
line holding only '.' never ends the response early. A message that does not end with
a line break gets CRLF before the terminating ``.CRLF``.
"""

from __future__ import annotations

from collections.abc import Iterator

from twisted.internet import defer

__all__ = ["ByteStuffer", "TopFilter", "MessageStreamer", "CHUNK", "whole_response"]

CHUNK = 64 * 1024


class ByteStuffer:
    """Dot-stuffs a stream of chunks, remembering whether a line starts next."""

    def __init__(self):
        self.at_line_start = True

    def stuff(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        if self.at_line_start and chunk[:1] == b".":
            chunk = b"." + chunk
        chunk = chunk.replace(b"\n.", b"\n..")
        self.at_line_start = chunk[-1:] == b"\n"
        return chunk


def terminator(stuffer: ByteStuffer) -> bytes:
    """``.CRLF``, after a CRLF when the message did not end with a line break."""
    return b".\r\n" if stuffer.at_line_start else b"\r\n.\r\n"


def whole_response(status: bytes, prefix: bytes, data: bytes) -> bytes:
    """A complete RETR response in one piece: status, stuffed message, terminator.

    For a message small enough to be held whole (at most :data:`CHUNK`); larger ones
    are streamed by :class:`MessageStreamer`.
    """
    stuffer = ByteStuffer()
    body = stuffer.stuff(prefix + data)
    return b"".join((status, body, terminator(stuffer)))


class TopFilter:
    """Passes the header block, the blank line and then ``lines`` body lines (TOP)."""

    def __init__(self, lines: int):
        self.remaining = lines
        self.in_headers = True
        self.line_chars = 0           # non-CR/LF octets seen on the current header line
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        pos, n = 0, len(chunk)
        while pos < n:
            if not self.in_headers and self.remaining <= 0:
                self.done = True
                return chunk[:pos]
            nl = chunk.find(b"\n", pos)
            end = n if nl < 0 else nl + 1
            if self.in_headers:
                self.line_chars += len(chunk[pos:end].strip(b"\r\n"))
                if nl >= 0:
                    if self.line_chars == 0:
                        self.in_headers = False
                    self.line_chars = 0
            elif nl >= 0:
                self.remaining -= 1
            pos = end
        if not self.in_headers and self.remaining <= 0:
            self.done = True
        return chunk


class MessageStreamer:
    """Writes ``status`` + the message + ``.CRLF`` to ``transport`` as it drains.

    It writes while the session's :class:`~mailet_mta.flow.backpressure.FlowControl`
    is not blocked (the transport's outgoing buffer is below its bound) and stops as
    soon as a write fills it; the session calls :meth:`resumeProducing` when that
    buffer has drained. So a message is read from its blob about one chunk ahead of
    what the peer takes, and a peer that stops reading stops the reading of the blob.

    The status line and the first chunk go out in one write; the last chunk and the
    terminator too. ``done`` fires with True when the whole response was written,
    False when the connection stopped it.
    """

    def __init__(self, transport, flow, status: bytes, chunks: Iterator[bytes],
                 top_lines: int | None = None):
        self.transport = transport
        self.flow = flow
        self.status = status
        self.chunks = chunks
        self.top = TopFilter(top_lines) if top_lines is not None else None
        self.stuffer = ByteStuffer()
        self.done: defer.Deferred = defer.Deferred()
        self._pending: bytes | None = None
        self._finished = False

    def start(self) -> defer.Deferred:
        self._pending = self._next()
        self._pump(self.status)
        return self.done

    def resumeProducing(self) -> None:
        """The transport drained: write on."""
        if not self._finished:
            self._pump(b"")

    def stopProducing(self) -> None:
        """The connection is gone."""
        self._finish(False)

    def _pump(self, head: bytes) -> None:
        while not self._finished:
            chunk, self._pending = self._pending, None
            if chunk is not None:
                self._pending = self._next()
            if chunk is None or self._pending is None:
                self.transport.write(head + (chunk or b"") + self._terminator())
                self._finish(True)
                return
            self.transport.write(head + chunk)
            head = b""
            if self.flow.blocked:
                return

    def _next(self) -> bytes | None:
        """The next non-empty stuffed chunk, or None at the end."""
        while True:
            if self.top is not None and self.top.done:
                return None
            try:
                chunk = next(self.chunks)
            except StopIteration:
                return None
            if self.top is not None:
                chunk = self.top.feed(chunk)
            if chunk:
                return self.stuffer.stuff(chunk)

    def _terminator(self) -> bytes:
        return terminator(self.stuffer)

    def _finish(self, complete: bool) -> None:
        if self._finished:
            return
        self._finished = True
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
        self.done.callback(complete)
