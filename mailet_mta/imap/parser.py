"""IMAP command input: lines and literals into tagged commands of tokens (RFC 3501 §9).

:class:`CommandReader` is fed the received bytes and gives back one event at a time:

- :class:`Command` ``(tag, name, args)``: ``name`` upper-cased (``UID FETCH`` is
  ``UID`` with ``FETCH`` as its first argument); ``args`` are the tokens of the
  contract: an **atom** is a ``str`` (a FETCH attribute with a section is one atom,
  brackets, spaces and partial included), a **string** (quoted or literal) is
  ``bytes``, a **parenthesised list** is a ``list`` of tokens;
- :data:`CONTINUE`: a synchronising literal ``{n}`` was announced and accepted; the
  session answers ``+ Ready`` and the client sends the octets (RFC 3501 §7.5);
- :class:`Rejected` ``(tag, text, fatal)``: the command broke a bound or the syntax.
  The session answers ``tag BAD text``; with ``fatal`` the input cannot be
  resynchronised (a non-synchronising literal over the bound, RFC 7888 §4) and the
  session says ``BYE`` and closes.

Bounds, so a stranger cannot make the reader hold more than a known amount:
the command text outside literals is at most ``max_line`` octets (64 KiB); a literal
is at most ``max_literal`` (64 KiB), except the message literal of ``APPEND``, which
may be ``max_append`` octets (the listener's maximum message size) and is then handed
to ``append_sink`` as it arrives instead of being held; at most
``max_tokens`` tokens and ``max_depth`` nested lists per command. A text line over the
bound is dropped as it arrives, up to its line end, and answered ``BAD``; a
synchronising literal over the bound is refused before the client sends it, so the
next line is the next command.

Between commands a session may read one plain line instead (:meth:`next_line`): the
SASL response of ``AUTHENTICATE`` and the ``DONE`` that ends ``IDLE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..flow.lines import TOO_LONG, LineBuffer

__all__ = ["CommandReader", "Command", "Rejected", "CONTINUE", "tokenize",
           "MAX_LINE", "MAX_LITERAL", "MAX_TOKENS", "MAX_DEPTH"]

MAX_LINE = 64 * 1024
MAX_LITERAL = 64 * 1024
MAX_TOKENS = 10_000
MAX_DEPTH = 32

_LITERAL = re.compile(rb"~?\{([0-9]{1,20})(\+?)\}\Z")
_TAG = re.compile(r"[!#$&',-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+\Z")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.=-]*\Z")
# Octets that end an atom outside brackets; CTLs are refused.
_ATOM_END = frozenset(b' ()"')


class _Continue:
    def __repr__(self) -> str:
        return "CONTINUE"


CONTINUE = _Continue()


@dataclass
class Command:
    """One complete command: its tag, its name (upper case) and its argument tokens."""

    tag: str
    name: str
    args: list = field(default_factory=list)


@dataclass
class Rejected:
    """A command answered ``BAD`` (``tag`` is ``*`` when none could be read)."""

    tag: str
    text: str
    fatal: bool = False


class _Syntax(Exception):
    pass


class CommandReader:
    """The incremental reader of one session's commands (see the module docstring)."""

    def __init__(self, max_append: int = 0, max_line: int = MAX_LINE,
                 max_literal: int = MAX_LITERAL, max_tokens: int = MAX_TOKENS,
                 max_depth: int = MAX_DEPTH, append_sink=None):
        self.max_append = max_append or (1 << 62)
        # append_sink(args before the literal, size) → an object with write(bytes) and
        # abort() that takes an APPEND literal over max_literal as it arrives (it then
        # stands in the arguments for the octets), or None: the literal is refused.
        self.append_sink = append_sink
        self._sink = None
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_tokens = max_tokens
        self.max_depth = max_depth
        self._lines = LineBuffer()
        self._parts: list[bytes] = []     # text, literal, text, literal, …, text
        self._text_octets = 0
        self._literal_octets = 0
        self._need = 0                    # octets of the literal being read
        self._literal: list[bytes] = []

    def __len__(self) -> int:
        """Octets received and not yet consumed."""
        return len(self._lines)

    @property
    def reading_literal(self) -> bool:
        return self._need > 0

    @property
    def discarding(self) -> bool:
        """Whether a line over the bound (answered BAD) is being dropped up to its
        line end."""
        return self._lines.discarding

    def feed(self, data: bytes) -> None:
        self._lines.feed(data)

    def clear(self) -> None:
        """Drop everything buffered and any command under way (STARTTLS, close)."""
        self._lines.clear()
        self._reset()

    def _reset(self) -> None:
        """Forget the command under way; a literal streamed into a sink is aborted."""
        for part in self._parts[1::2]:
            if not isinstance(part, bytes):
                part.abort()
        if self._sink is not None:
            self._sink.abort()
            self._sink = None
        self._parts = []
        self._text_octets = self._literal_octets = self._need = 0
        self._literal = []

    # -- plain lines between commands --------------------------------------------------
    def next_line(self, limit: int = MAX_LINE):
        """The next raw line (no literal processing), None when incomplete, or
        :data:`~mailet_mta.flow.lines.TOO_LONG`."""
        return self._lines.next_line(limit)

    # -- commands -------------------------------------------------------------------
    def next_event(self):
        """The next :class:`Command`, :data:`CONTINUE` or :class:`Rejected`; None
        when more input is needed."""
        while True:
            if self._need:
                if not self._read_literal():
                    return None
                continue
            start = self._parts[0] if self._parts else self._lines.peek(80)
            line = self._lines.next_line(self.max_line - self._text_octets)
            if line is None:
                return None
            if line is TOO_LONG:
                tag = self._tag_of(start)
                self._reset()
                return Rejected(tag, "command line too long (the limit is "
                                f"{self.max_line} octets outside literals)")
            if not self._parts and not line.strip():
                continue                  # an empty line between commands: ignored
            self._parts.append(line)
            self._text_octets += len(line)
            match = _LITERAL.search(line[-24:])
            if match is None:
                return self._complete()
            event = self._announce(int(match.group(1)), bool(match.group(2)))
            if event is not None:
                return event

    def _announce(self, size: int, non_sync: bool):
        """A literal of ``size`` octets was announced at the end of the last line."""
        tag = self._tag_of(self._parts[0])
        appending = self._is_append()
        bound = self.max_append if appending else self.max_literal
        total = self._literal_octets + size
        if size > bound or (not appending and total > self.max_literal * 4):
            self._reset()
            text = (f"literal too large ({size} octets; the limit is {bound})"
                    if size > bound else "too much literal data in one command")
            if non_sync:
                # RFC 7888 §4: the octets are on their way and cannot be told from
                # commands without reading them all.
                return Rejected(tag, text, fatal=True)
            return Rejected(tag, text)
        if appending and size > self.max_literal:
            self._sink = self._open_sink(size)
            if self._sink is None:
                self._reset()
                text = f"literal too large ({size} octets; the limit is {self.max_literal})"
                return Rejected(tag, text, fatal=non_sync)
            total -= size                      # streamed, not held
        self._literal_octets = total
        self._need = size
        self._literal = []
        if size == 0:
            self._parts.append(b"")
        return None if non_sync else CONTINUE

    def _open_sink(self, size: int):
        if self.append_sink is None:
            return None
        parts = list(self._parts)
        last = parts[-1]
        match = _LITERAL.search(last)
        parts[-1] = last[:match.start()] if match else last
        head = parts[0].split(b" ", 2)
        parts[0] = head[2] if len(head) > 2 else b""
        try:
            args = tokenize(parts, self.max_tokens, self.max_depth)
        except _Syntax:
            return None
        return self.append_sink(args, size)

    def _read_literal(self) -> bool:
        """Move literal octets from the input; True once the literal is complete."""
        chunk = self._lines.take_upto(self._need)
        if chunk:
            if self._sink is not None:
                self._sink.write(chunk)
            else:
                self._literal.append(chunk)
            self._need -= len(chunk)
        if self._need:
            return False
        if self._sink is not None:
            self._parts.append(self._sink)
            self._sink = None
        else:
            self._parts.append(b"".join(self._literal))
        self._literal = []
        return True

    def _is_append(self) -> bool:
        head = self._parts[0].split(None, 2)
        return len(head) >= 2 and head[1].upper() == b"APPEND"

    def _tag_of(self, line: bytes) -> str:
        tag = line.split(b" ", 1)[0].decode("ascii", "replace")
        return tag if tag and _TAG.match(tag) and len(tag) <= 64 else "*"

    def _complete(self):
        parts, self._parts = self._parts, []
        self._text_octets = self._literal_octets = 0
        first = parts[0]
        tag = self._tag_of(first)
        head = first.split(b" ", 2)
        name = head[1].decode("ascii", "replace") if len(head) > 1 else ""
        parts[0] = head[2] if len(head) > 2 else b""
        try:
            if tag == "*" or len(head) < 2:
                raise _Syntax("a command is a tag, a space and a command name")
            if not _NAME.match(name):
                raise _Syntax("invalid command name")
            if len(head) == 2 and len(parts) > 1:
                raise _Syntax("a literal needs a space before it")
            args = tokenize(parts, self.max_tokens, self.max_depth)
        except _Syntax as exc:
            self._parts = parts
            self._reset()                      # aborts a streamed literal
            return Rejected(tag, str(exc))
        return Command(tag, name.upper(), args)


def tokenize(parts: list[bytes], max_tokens: int = MAX_TOKENS,
             max_depth: int = MAX_DEPTH) -> list:
    """The tokens of a command's arguments: ``parts`` alternate text (even indexes) and
    literal octets (odd indexes); each text but the last ends with its ``{n}``."""
    stack: list[list] = [[]]
    count = 0
    last = len(parts) - 1
    for index in range(0, len(parts), 2):
        text = parts[index]
        literal = None
        if index < last:
            match = _LITERAL.search(text)
            assert match is not None
            text = text[:match.start()]
            literal = parts[index + 1]
        pos, n = 0, len(text)
        while pos < n:
            c = text[pos]
            if c == 0x20:
                pos += 1
                continue
            if c == 0x28:                                   # (
                if len(stack) > max_depth:
                    raise _Syntax(f"lists nested too deeply (the limit is {max_depth})")
                new: list = []
                stack[-1].append(new)
                stack.append(new)
                pos += 1
            elif c == 0x29:                                 # )
                if len(stack) == 1:
                    raise _Syntax("unbalanced parenthesis")
                stack.pop()
                pos += 1
                continue
            elif c == 0x22:                                 # "
                value, pos = _quoted(text, pos + 1)
                stack[-1].append(value)
            else:
                value, pos = _atom(text, pos)
                stack[-1].append(value)
            count += 1
            if count > max_tokens:
                raise _Syntax(f"too many arguments (the limit is {max_tokens})")
        if literal is not None:
            stack[-1].append(literal)
            count += 1
    if len(stack) != 1:
        raise _Syntax("unbalanced parenthesis")
    return stack[0]


def _quoted(text: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == 0x22:
            return bytes(out), pos + 1
        if c == 0x5C:                                       # backslash
            if pos + 1 >= n or text[pos + 1] not in b'"\\':
                raise _Syntax("invalid escape in a quoted string")
            out.append(text[pos + 1])
            pos += 2
            continue
        if c in (0x0D, 0x0A, 0x00):
            raise _Syntax("invalid octet in a quoted string")
        out.append(c)
        pos += 1
    raise _Syntax("unterminated quoted string")


def _atom(text: bytes, pos: int) -> tuple[str, int]:
    """An atom from ``pos``; brackets (``BODY[HEADER.FIELDS (A B)]``) keep their
    spaces and parentheses, and a partial ``<0.100>`` after them stays in the atom."""
    start, n, depth = pos, len(text), 0
    while pos < n:
        c = text[pos]
        if c < 0x20 or c == 0x7F:
            raise _Syntax("control character in an argument")
        if c == 0x5B:                                       # [
            depth += 1
        elif c == 0x5D and depth:                           # ]
            depth -= 1
        elif depth == 0 and c in _ATOM_END:
            break
        elif c == 0x7B and depth == 0:                      # {
            raise _Syntax("a literal must end its line")
        pos += 1
    if depth:
        raise _Syntax("unbalanced bracket")
    try:
        return text[start:pos].decode("ascii"), pos
    except UnicodeDecodeError:
        # RFC 6855 §3: 8-bit text only in quoted strings and literals.
        raise _Syntax("8-bit octets are allowed only in quoted strings and literals") \
            from None
