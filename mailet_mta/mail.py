"""The ``Mail`` that travels through the processors.

A Mail is an envelope (sender, recipients, state, attributes, where it came from)
plus the message. The message is kept as the bytes it arrived with; ``mail.message``
parses it lazily into an :class:`email.message.EmailMessage`, and only when a mailet
changed that object is it serialised again. A mail that no mailet touched is delivered
byte for byte as it was received.
"""

from __future__ import annotations

import copy
import email.feedparser
import email.parser
import email.policy
import io
import itertools
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import IO, Any

from .address import MailAddress
from .header_block import (
    HEADER_BLOCK_LIMIT,
    _header_block,
    _header_end,
    _read_header_block,
    field_names,
    fields_added,
    fields_removed,
)

__all__ = ["Mail", "MessageSource", "new_mail_name", "MAIL_POLICY", "MimeLimits",
           "MimeLimitError", "ATTR_AUTH_USER"]

# The SMTP AUTH identity a mail was sent with lives in this attribute only;
# ``Mail.auth_user`` reads and writes it.
ATTR_AUTH_USER = "mailet_mta.smtp.auth_user"

# CRLF line ends, no header refolding of untouched headers, raise nothing on defects.
MAIL_POLICY = email.policy.SMTP.clone(refold_source="none")


_ID_PREFIX = os.urandom(6).hex() + f"{time.time_ns() // 1000:011x}"[-11:]
_ID_COUNTER = itertools.count(1)


def new_mail_name() -> str:
    """A fresh, globally unique id (mail names, blob ids): 128 bits of a random process
    prefix and start time, then a counter — cheaper than uuid4 on the hot path."""
    return "%s%09x" % (_ID_PREFIX, next(_ID_COUNTER))


class MessageSource:
    """Where a message's bytes live: in memory, or a blob read on demand.

    ``loader`` is a callable returning the bytes, used for large messages kept in the
    blob store; ``opener`` returns a binary file object for streaming them. ``head``,
    when known, is the start of those bytes (where the header block usually is).
    """

    __slots__ = ("_data", "_loader", "_opener", "size", "blob_id", "head")

    def __init__(self, data: bytes | None = None, *, size: int | None = None,
                 loader: Callable[[], bytes] | None = None,
                 opener: Callable[[], IO[bytes]] | None = None, blob_id: str | None = None,
                 head: bytes | None = None):
        self._data = data
        self._loader = loader
        self._opener = opener
        self.head = head
        if data is not None:
            self.size = len(data)
        elif loader is None:
            raise ValueError("a MessageSource needs data or a loader")
        else:
            self.size = size if size is not None else len(loader())
        self.blob_id = blob_id

    @property
    def in_memory(self) -> bool:
        return self._data is not None

    def read(self) -> bytes:
        if self._data is not None:
            return self._data
        assert self._loader is not None  # __init__ refuses a source with neither
        return self._loader()

    def open(self) -> IO[bytes]:
        if self._data is not None or self._opener is None:
            return io.BytesIO(self.read())
        return self._opener()


class _TrackingMessage(EmailMessage):
    """An EmailMessage (and every part of it) that records that it was changed."""

    def __init__(self, policy: email.policy.Policy | None = None,
                 tracker: list[bool] | None = None):
        super().__init__(policy=policy or MAIL_POLICY)
        self.__dict__["_tracker"] = tracker if tracker is not None else [False]

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("preamble", "epilogue", "_payload", "_headers", "_charset", "_default_type"):
            tracker = self.__dict__.get("_tracker")
            if tracker is not None and name in self.__dict__:
                tracker[0] = True
        super().__setattr__(name, value)


def _mark_changed(method_name: str) -> Callable[..., Any]:
    base = getattr(EmailMessage, method_name)

    def changed(self: _TrackingMessage, *args: Any, **kwargs: Any) -> Any:
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


@dataclass(frozen=True)
class MimeLimits:
    """How much MIME structure a parse builds: ``max_parts`` parts in all (the message
    itself counts, so does each attached message), ``max_depth`` levels of nesting
    (the message itself is level 1). Depth 100 is Postfix's and Dovecot's nesting
    limit; 1,000 parts (Dovecot allows 10,000) because the stdlib parser spends
    0.1–0.3 ms on each part, and no real mail comes near."""

    max_parts: int = 1000
    max_depth: int = 100


class MimeLimitError(ValueError):
    """The message has more MIME parts or deeper nesting than the limits allow; it
    was not parsed. The text names the limit and its configuration key."""


class _LimitedFeedParser(email.feedparser.BytesFeedParser):
    """The stdlib's feed parser, stopped with MimeLimitError at the first part past a
    limit, so a hostile shape costs a bounded parse."""

    _msgstack: list[Any]          # the stdlib parser's open parts (a private attribute)

    def __init__(self, limits: MimeLimits, **kw: Any):
        super().__init__(**kw)
        self._limits = limits
        self._parts = 0

    def _new_message(self) -> None:
        self._parts += 1
        if self._parts > self._limits.max_parts:
            raise MimeLimitError(f"the message has more than {self._limits.max_parts} MIME "
                                 f"parts (spoolmanager maxMimeParts)")
        if len(self._msgstack) >= self._limits.max_depth:
            raise MimeLimitError(f"the message nests MIME parts deeper than "
                                 f"{self._limits.max_depth} levels (spoolmanager "
                                 f"maxMimeDepth)")
        super()._new_message()  # type: ignore[misc]  # private in the stubs


def parse_message(data: bytes, tracker: list[bool] | None = None,
                  limits: MimeLimits = MimeLimits()) -> EmailMessage:
    """Parse bytes into an EmailMessage whose parts report changes to ``tracker``.

    Raises MimeLimitError when the message is more complex than ``limits``."""
    changes = tracker if tracker is not None else [False]

    def factory(policy: email.policy.Policy | None = None) -> _TrackingMessage:
        return _TrackingMessage(policy, changes)

    parser = _LimitedFeedParser(limits, _factory=factory,
                                policy=MAIL_POLICY.clone(message_factory=factory))
    view = memoryview(data)
    for start in range(0, len(data), 65536):
        parser.feed(bytes(view[start:start + 65536]))
    msg = parser.close()
    changes[0] = False
    assert isinstance(msg, EmailMessage)  # made by the factory
    return msg


class _JoinedReader(io.RawIOBase):
    """A binary stream of ``head`` followed by the rest of the file ``tail``."""

    def __init__(self, head: bytes, tail: IO[bytes]):
        self._head = memoryview(head)
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._tail.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._tail.close()
        super().close()


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
        if auth_user is not None:
            self.attributes[ATTR_AUTH_USER] = auth_user
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
    # Set by the spool manager from spoolmanager.maxMimeParts / maxMimeDepth.
    mime_limits = MimeLimits()

    @property
    def message(self) -> EmailMessage:
        """The parsed message; changes made to it are written back when the mail is saved.

        Raises MimeLimitError (and keeps raising it, without parsing again) when the
        message has more parts or deeper nesting than ``mime_limits``. The parse costs
        CPU in proportion to the message: see "Where service() runs" in the mailet
        documentation."""
        if self._message is None:
            src = self._source
            failed = self.__dict__.get("_mime_error")
            if failed is not None and failed[0] is src:
                raise MimeLimitError(str(failed[1]))
            assert src is not None  # no parsed message: the bytes are the message
            try:
                self._message = parse_message(src.read(), self._tracker, self.mime_limits)
            except MimeLimitError as exc:
                self._mime_error = (src, exc)
                raise
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
            assert self._message is not None
            try:
                data = self._message.as_bytes(policy=MAIL_POLICY)
            except (UnicodeError, ValueError):
                # A header holding undecodable bytes (kept by the parser as U+FFFD or
                # surrogates) cannot be written as ASCII: write it as UTF-8 instead.
                data = self._message.as_bytes(policy=MAIL_POLICY.clone(utf8=True))
            self._source = MessageSource(data)
            self._tracker[0] = False
        assert self._source is not None  # an unchanged message keeps its bytes
        return self._source

    def message_bytes(self) -> bytes:
        """The whole message as bytes (CRLF line ends as received)."""
        return self.source.read()

    def open_message(self) -> IO[bytes]:
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
        src = self.source
        cached = self.__dict__.get("_header_cache")
        if cached is not None and cached[0] is src:
            return cached[1]  # type: ignore[no-any-return]
        block = self._raw_header_block(src)
        # Only the header block is handed to the parser: given the whole message, the
        # stdlib splits every body line even in headersonly mode.
        parsed = email.parser.BytesHeaderParser(policy=MAIL_POLICY).parsebytes(block)
        assert isinstance(parsed, EmailMessage)  # MAIL_POLICY's factory
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
        src = self.source
        cached = self.__dict__.get("_names_cache")
        if cached is not None and cached[0] is src:
            return cached[1]  # type: ignore[no-any-return]
        names = field_names(self._raw_header_block(src))
        self._names_cache = (src, names)
        return names

    def header_block(self) -> bytes:
        """The message's raw header block, up to and including the empty line that
        ends it (at most ``HEADER_BLOCK_LIMIT`` octets), read without parsing."""
        if self._message is not None:
            return _header_block(self.message_bytes())
        return self._raw_header_block(self.source)

    def remove_headers(self, names: Iterable[str]) -> int:
        """Remove every field named in ``names`` (any case); returns how many went.

        An unparsed message is edited as raw bytes: only its header block is
        rewritten, so this costs the same for a 50 MB or 100,000-part message as for a
        small one, and the body stays byte for byte as received."""
        wanted = {name.lower() for name in names}
        if self._message is not None:
            present = [n for n in self._message.keys() if n.lower() in wanted]
            for name in {n.lower() for n in present}:
                del self._message[name]
            return len(present)
        if wanted.isdisjoint(self.header_names()):
            return 0                # the usual case: nothing to rewrite
        block = self._raw_header_block(self.source)
        edited, removed = fields_removed(block, wanted)
        if removed:
            self._splice_header_block(len(block), edited)
        return removed

    def add_header(self, name: str, value: str) -> None:
        """Add the field ``name: value`` after the last one (existing fields stay), as
        ``mail.message[name] = value`` does, without parsing an unparsed message."""
        if self._message is None:
            block = self._raw_header_block(self.source)
            edited = fields_added(block, name, value, MAIL_POLICY)
            if edited is not None:
                self._splice_header_block(len(block), edited)
                return
        self.message[name] = value

    def _splice_header_block(self, old_length: int, block: bytes) -> None:
        """Make ``block`` the new header block, in place of the first ``old_length``
        octets; a blob-backed body is read from the blob when needed, not copied now."""
        src = self.source
        if src.in_memory:
            self.set_message_bytes(block + src.read()[old_length:])
            return

        def loader() -> bytes:
            return block + src.read()[old_length:]

        def opener() -> IO[bytes]:
            body = src.open()
            body.seek(old_length)
            return io.BufferedReader(_JoinedReader(block, body))

        self._message = None
        self._tracker = [False]
        self._source = MessageSource(size=src.size - old_length + len(block),
                                     loader=loader, opener=opener)

    def has_header(self, name: str) -> bool:
        """True when the message has at least one ``name`` header (any case)."""
        return name.lower() in self.header_names()

    @staticmethod
    def _raw_header_block(src: MessageSource) -> bytes:
        if src.in_memory:
            return _header_block(src.read())
        head = src.head
        if head is not None:
            end = _header_end(head[:HEADER_BLOCK_LIMIT + 3])
            if end >= 0:
                return head[:end]        # the whole block is in the head: no file read
        with src.open() as f:
            return _read_header_block(f)

    # -- envelope --------------------------------------------------------------
    @property
    def auth_user(self) -> str | None:
        """The SMTP AUTH identity the mail was sent with, or None: the attribute
        ``mailet_mta.smtp.auth_user`` (``ATTR_AUTH_USER``), its only record."""
        value = self.attributes.get(ATTR_AUTH_USER)
        return str(value) if value else None

    @auth_user.setter
    def auth_user(self, value: str | None) -> None:
        if value:
            self.attributes[ATTR_AUTH_USER] = value
        else:
            self.attributes.pop(ATTR_AUTH_USER, None)

    @property
    def sender_is_null(self) -> bool:
        return self.sender is None

    def get_attribute(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    def set_attribute(self, name: str, value: Any) -> None:
        self.attributes[name] = value

    def remove_attribute(self, name: str) -> None:
        self.attributes.pop(name, None)

    def duplicate(self, name: str | None = None) -> Mail:
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
