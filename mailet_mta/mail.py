"""The ``Mail`` that travels through the processors.

A Mail is an envelope (sender, recipients, state, attributes, where it came from)
plus the message. The message is kept as the bytes it arrived with; ``mail.message``
parses it lazily into an :class:`email.message.EmailMessage`, and only when a mailet
changed that object is it serialised again. A mail that no mailet touched is delivered
byte for byte as it was received.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import io
import time
import itertools
import os
import re
from email.message import EmailMessage
from typing import Any, Callable, Iterable

from .address import MailAddress

__all__ = ["Mail", "MessageSource", "new_mail_name", "MAIL_POLICY"]

# CRLF line ends, no header refolding of untouched headers, raise nothing on defects.
MAIL_POLICY = email.policy.SMTP.clone(refold_source="none")


_ID_PREFIX = os.urandom(6).hex() + "{:011x}".format(time.time_ns() // 1000)[-11:]
_ID_COUNTER = itertools.count(1)


def new_mail_name() -> str:
    """A fresh, globally unique id (mail names, blob ids): 128 bits of a random process
    prefix and start time, then a counter — cheaper than uuid4 on the hot path."""
    return "%s%09x" % (_ID_PREFIX, next(_ID_COUNTER))


class MessageSource:
    """Where a message's bytes live: in memory, or a blob read on demand.

    ``loader`` is a callable returning the bytes, used for large messages kept in the
    blob store; ``opener`` returns a binary file object for streaming them.
    """

    __slots__ = ("_data", "_loader", "_opener", "size", "blob_id")

    def __init__(self, data: bytes | None = None, *, size: int | None = None,
                 loader: Callable[[], bytes] | None = None,
                 opener: Callable[[], Any] | None = None, blob_id: str | None = None):
        if data is None and loader is None:
            raise ValueError("a MessageSource needs data or a loader")
        self._data = data
        self._loader = loader
        self._opener = opener
        self.size = len(data) if data is not None else size
        self.blob_id = blob_id

    @property
    def in_memory(self) -> bool:
        return self._data is not None

    def read(self) -> bytes:
        if self._data is not None:
            return self._data
        return self._loader()

    def open(self):
        if self._data is not None or self._opener is None:
            return io.BytesIO(self.read())
        return self._opener()


# A header block is read at most this far; past it the rest counts as body. The SMTP
# server refuses longer header blocks (``maxHeaderSize``, 1 MiB by default), so only a
# mail made some other way is cut here.
HEADER_BLOCK_LIMIT = 1024 * 1024


def _blank_line_end(data, start: int = 0) -> int:
    """Offset just past the first empty line found at or after ``start`` (-1: none)."""
    crlf, lf = data.find(b"\n\r\n", start), data.find(b"\n\n", start)
    if crlf < 0 and lf < 0:
        return -1
    if lf < 0 or 0 <= crlf < lf:
        return crlf + 3
    return lf + 2


def _header_end(data: bytes) -> int:
    """Offset just past the empty line ending the header block (-1: none yet)."""
    if data.startswith(b"\r\n"):
        return 2
    if data.startswith(b"\n"):
        return 1
    return _blank_line_end(data)


def _header_block(data: bytes, limit: int = HEADER_BLOCK_LIMIT) -> bytes:
    end = _header_end(data[:limit + 3])
    return data[:limit] if end < 0 else data[:end]


def _read_header_block(f, chunk: int = 65536, limit: int = HEADER_BLOCK_LIMIT) -> bytes:
    """The header block of the binary file ``f``, read in chunks: each octet is
    searched once (linear time), and at most ``limit`` octets are kept (a block that
    has not ended by then is cut there)."""
    buf = bytearray()
    while len(buf) < limit + 3:
        searched = len(buf)
        more = f.read(min(chunk, limit + 3 - searched))
        if not more:
            break
        buf += more
        # An empty line may straddle two reads; the first two octets decide alone.
        end = _header_end(buf) if searched < 2 else _blank_line_end(buf, searched - 2)
        if end >= 0:
            return bytes(buf[:end])
    return bytes(buf[:limit])


# What the stdlib's feedparser takes as a header line (field, continuation, mbox From_);
# the first other line ends the header block for it, and so for header_names().
_HEADER_LINE = re.compile(rb"(From |[\x21-\x39\x3b-\x7e]*:|[\t ])")


def _field_names(block: bytes) -> list[str]:
    """Lower-cased field names of a raw header block, as the email parser sees them."""
    names = []
    for i, line in enumerate(block.split(b"\n")):
        if not _HEADER_LINE.match(line):
            break
        first = line[:1]
        if first in (b" ", b"\t") or (i == 0 and line.startswith(b"From ")):
            continue
        colon = line.index(b":")
        if colon:                   # ":value" has no name; the parser drops it too
            names.append(line[:colon].decode("latin-1").lower())
    return names


class _TrackingMessage(EmailMessage):
    """An EmailMessage (and every part of it) that records that it was changed."""

    def __init__(self, policy=None, tracker=None):
        super().__init__(policy=policy or MAIL_POLICY)
        self.__dict__["_tracker"] = tracker if tracker is not None else [False]

    def __setattr__(self, name, value):
        if name in ("preamble", "epilogue", "_payload", "_headers", "_charset", "_default_type"):
            tracker = self.__dict__.get("_tracker")
            if tracker is not None and name in self.__dict__:
                tracker[0] = True
        super().__setattr__(name, value)


def _mark_changed(method_name):
    base = getattr(EmailMessage, method_name)

    def changed(self, *args, **kwargs):
        self.__dict__["_tracker"][0] = True
        return base(self, *args, **kwargs)

    changed.__name__ = method_name
    changed.__doc__ = base.__doc__
    return changed


for _name in ("__setitem__", "__delitem__", "add_header", "replace_header", "set_payload",
              "attach", "set_param", "del_param", "set_type", "set_charset", "set_boundary",
              "set_content", "make_related", "make_alternative", "make_mixed", "add_related",
              "add_alternative", "add_attachment", "clear", "clear_content", "set_raw",
              "set_default_type"):
    setattr(_TrackingMessage, _name, _mark_changed(_name))


def parse_message(data: bytes, tracker=None) -> EmailMessage:
    """Parse bytes into an EmailMessage whose parts report changes to ``tracker``."""
    tracker = tracker if tracker is not None else [False]

    def factory(policy=None):
        return _TrackingMessage(policy, tracker)

    policy = MAIL_POLICY.clone(message_factory=factory)
    msg = email.parser.BytesParser(policy=policy).parsebytes(data)
    tracker[0] = False
    return msg


class Mail:
    """One mail in the pipeline: envelope, state, attributes and message.

    ``sender`` is a :class:`MailAddress` or ``None`` for the null reverse-path ``<>``.
    ``recipients`` is a list of MailAddress; a mailet may change it. ``state`` names
    the processor the mail is in; setting it to another name moves the mail there after
    the current mailet, ``"ghost"`` ends its processing. ``attributes`` holds
    JSON-serialisable values (names like ``"mailet_mta.smtp.auth_user"``) that travel
    with the mail and survive a restart.
    """

    GHOST = "ghost"
    DEFAULT_STATE = "root"
    ERROR = "error"

    def __init__(self, name: str | None = None, *, sender: MailAddress | None = None,
                 recipients: Iterable[MailAddress] = (), message: bytes | EmailMessage |
                 MessageSource | None = None, state: str = DEFAULT_STATE,
                 attributes: dict[str, Any] | None = None, error_message: str | None = None,
                 remote_addr: str = "127.0.0.1", remote_host: str = "localhost",
                 helo: str | None = None, auth_user: str | None = None,
                 last_updated: float | None = None):
        self.name = name or new_mail_name()
        self.sender = sender
        self.recipients = list(recipients)
        self.state = state
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.error_message = error_message
        self.remote_addr = remote_addr
        self.remote_host = remote_host
        self.helo = helo
        self.auth_user = auth_user
        self.last_updated = last_updated if last_updated is not None else time.time()
        self._tracker = [False]
        self._message: EmailMessage | None = None
        self._source: MessageSource | None = None
        if isinstance(message, EmailMessage):
            self.set_message(message)
        elif isinstance(message, MessageSource):
            self._source = message
        else:
            self._source = MessageSource(message or b"")

    # -- message ---------------------------------------------------------------
    @property
    def message(self) -> EmailMessage:
        """The parsed message; changes made to it are written back when the mail is saved."""
        if self._message is None:
            self._message = parse_message(self._source.read(), self._tracker)
        return self._message

    @message.setter
    def message(self, value: EmailMessage) -> None:
        self.set_message(value)

    def set_message(self, msg: EmailMessage) -> None:
        """Replace the message with ``msg`` (always counts as a change)."""
        self._message = msg
        self._tracker = [True]
        self._source = None

    def set_message_bytes(self, data: bytes) -> None:
        """Replace the message with raw bytes (no parse until someone asks)."""
        self._message = None
        self._tracker = [False]
        self._source = MessageSource(data)

    @property
    def message_changed(self) -> bool:
        """True when the message differs from the bytes in ``source``."""
        return self._message is not None and (self._tracker[0] or self._source is None)

    def mark_message_changed(self) -> None:
        """Tell the mail its message was changed in a way the tracker cannot see."""
        self._tracker[0] = True

    @property
    def source(self) -> MessageSource:
        """The message as stored bytes, serialising a changed message first."""
        if self.message_changed:
            try:
                data = self._message.as_bytes(policy=MAIL_POLICY)
            except (UnicodeError, ValueError):
                # A header holding undecodable bytes (kept by the parser as U+FFFD or
                # surrogates) cannot be written as ASCII: write it as UTF-8 instead.
                data = self._message.as_bytes(policy=MAIL_POLICY.clone(utf8=True))
            self._source = MessageSource(data)
            self._tracker[0] = False
        return self._source

    def message_bytes(self) -> bytes:
        """The whole message as bytes (CRLF line ends as received)."""
        return self.source.read()

    def open_message(self):
        """A binary file object over the message, streaming large ones from the blob."""
        return self.source.open()

    @property
    def size(self) -> int:
        """Message size in octets."""
        return self.source.size

    def headers(self) -> EmailMessage:
        """The header block only, parsed; cheap for large messages. Read-only use."""
        if self._message is not None:
            return self._message
        src = self._source
        cached = self.__dict__.get("_header_cache")
        if cached is not None and cached[0] is src:
            return cached[1]
        block = self._raw_header_block(src)
        # Only the header block is handed to the parser: given the whole message, the
        # stdlib splits every body line even in headersonly mode.
        parsed = email.parser.BytesHeaderParser(policy=MAIL_POLICY).parsebytes(block)
        self._header_cache = (src, parsed)      # valid while the source is the same
        return parsed

    def header_names(self) -> list[str]:
        """The field names of the header block in order, lower-cased, one entry per
        field (``Received`` three times: three entries). Read from the raw header block
        without parsing any value while the message is unchanged, so testing whether a
        header is present or counting one is cheap: ``mail.header_names().count(
        "received")``."""
        if self._message is not None:
            return [name.lower() for name in self._message.keys()]
        src = self._source
        cached = self.__dict__.get("_names_cache")
        if cached is not None and cached[0] is src:
            return cached[1]
        names = _field_names(self._raw_header_block(src))
        self._names_cache = (src, names)
        return names

    def header_block(self) -> bytes:
        """The message's raw header block, up to and including the empty line that
        ends it (at most ``HEADER_BLOCK_LIMIT`` octets), read without parsing."""
        if self._message is not None:
            return _header_block(self.message_bytes())
        return self._raw_header_block(self._source)

    def has_header(self, name: str) -> bool:
        """True when the message has at least one ``name`` header (any case)."""
        return name.lower() in self.header_names()

    @staticmethod
    def _raw_header_block(src: MessageSource) -> bytes:
        if src.in_memory:
            return _header_block(src.read())
        with src.open() as f:
            return _read_header_block(f)

    # -- envelope --------------------------------------------------------------
    @property
    def sender_is_null(self) -> bool:
        return self.sender is None

    def get_attribute(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    def set_attribute(self, name: str, value: Any) -> None:
        self.attributes[name] = value

    def remove_attribute(self, name: str) -> None:
        self.attributes.pop(name, None)

    def duplicate(self, name: str | None = None) -> "Mail":
        """A copy with its own envelope, attributes and message (for splits and re-sends)."""
        other = Mail.__new__(Mail)
        other.__dict__.update(self.__dict__)
        other.name = name or new_mail_name()
        other.recipients = list(self.recipients)
        other.attributes = copy.deepcopy(self.attributes)
        if self._message is not None and self.message_changed:
            other._message = copy.deepcopy(self._message)
            other._tracker = [True]
            other._source = None
        else:
            other._message = None
            other._tracker = [False]
            other._source = self._source
        return other

    def __repr__(self) -> str:
        return (f"<Mail {self.name} state={self.state} from=<{self.sender or ''}> "
                f"to={[str(r) for r in self.recipients]}>")
