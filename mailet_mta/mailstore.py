"""What the retrieval servers (POP3 now, IMAP next) need of the mail store: :class:`IMailStore`.

The mirror of :class:`~mailet_mta.smtp.backend.ISMTPBackend`: a protocol package talks
to the users' mailboxes only through this interface, so it can be read, tested and
fuzzed alone; :mod:`mailet_mta.retrieval` adapts it to the database and blob store.

The words used below:

- A **folder** of a user is one mailbox (``INBOX``, ``Sent``, …). Its
  ``uid_validity`` and ``uid_next`` are those of RFC 3501 §2.3.1.1: every new message
  takes the next UID, UIDs are never reused while ``uid_validity`` is unchanged.
- A **message id** is the store's opaque handle of one message, as a
  :class:`MessageList` carries it; ids are valid across folders and sessions until the
  message is expunged.
- A **size** is in wire octets: what RETR/FETCH RFC822 sends before byte-stuffing
  (trace headers added at delivery included), CRLF line ends.
- **Flags** are IMAP system flags (``\\Seen``, ``\\Answered``, ``\\Flagged``,
  ``\\Draft``) and keywords, as strings.

Every method that reads or writes the store returns a Deferred: SQL and file access
never run on the reactor thread. Synchronous methods answer from memory.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from itertools import compress

from zope.interface import Attribute, Interface

__all__ = ["IMailStore", "IMessageContent", "IFolderSubscription", "LeaseLost",
           "NoSuchFolder", "FolderStatus", "MessageList", "SYSTEM_FLAGS"]

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"})


class LeaseLost(Exception):
    """The session's mailbox lease expired and another session took it over: the
    operation changed nothing."""


class NoSuchFolder(LookupError):
    """The user has no folder of that name (IMAP ``NO [NONEXISTENT]``)."""


@dataclass(frozen=True)
class FolderStatus:
    """One folder's state: equal states mean the same messages (message rows never
    change, every new message takes a fresh UID, every removal lowers ``messages``)."""

    name: str
    uid_validity: int
    uid_next: int
    messages: int


class MessageList:
    """The messages of one folder at one moment, in UID order, ready to answer.

    ``ids`` (message ids), ``uids`` and ``sizes`` are arrays; ``list_lines`` and
    ``uidl_lines`` are the POP3 LIST and UIDL lines (``b"N size\\r\\n"``,
    ``b"N uidl\\r\\n"``, N the 1-based position), rendered once where the list is
    read — off the reactor — so a listing on the reactor is one join of ready lines.
    ``chunks`` are lists of ``(id, uid, uidl, size)`` rows in UID order; each chunk
    becomes arrays and lines before the next is read, so a list of 100,000 messages
    holds a handful of objects the garbage collector tracks. Never changed once built:
    sessions may share one.
    """

    __slots__ = ("ids", "uids", "sizes", "octets", "list_lines", "uidl_lines")

    def __init__(self, chunks=()):
        self.ids, self.uids, self.sizes = array("q"), array("q"), array("q")
        self.list_lines: list[bytes] = []
        self.uidl_lines: list[bytes] = []
        for rows in chunks:
            self._add(rows)
        self.octets: int = sum(self.sizes)

    def _add(self, rows) -> None:
        if not rows:
            return
        ids, uids, uidls, sizes = zip(*rows)
        first = len(self.ids) + 1
        numbers = range(first, first + len(ids))
        self.ids.extend(ids)
        self.uids.extend(uids)
        self.sizes.extend(sizes)
        self.list_lines += map(b"%d %d\r\n".__mod__, zip(numbers, sizes))
        self.uidl_lines += [f"{n} {uidl}\r\n".encode("ascii")
                            for n, uidl in zip(numbers, uidls)]

    def __len__(self) -> int:
        return len(self.ids)

    def listing(self, lines: list[bytes], deleted) -> bytes:
        """``lines`` (``list_lines`` or ``uidl_lines``) of the messages whose index
        (number - 1) is not in ``deleted``, joined."""
        if not deleted:
            return b"".join(lines)
        kept = bytearray(b"\x01") * len(lines)
        for index in deleted:
            kept[index] = 0
        return b"".join(compress(lines, kept))


class IMessageContent(Interface):
    """One message as a retrieval server sends it."""

    size = Attribute("int: the message's size in wire octets")

    def chunks(chunk_size):
        """An iterator of the message's bytes in pieces of at most ``chunk_size``
        octets (the trace headers first). It reads the body as it is iterated, one
        open file at a time; closing it (``.close()``) releases the file. Iterate it
        off the reactor thread, or in pieces small enough not to stall it."""


class IFolderSubscription(Interface):
    """What :meth:`IMailStore.subscribe` returns."""

    def cancel():
        """Stop the notifications (idempotent)."""


class IMailStore(Interface):
    """The users' mailboxes as a retrieval server sees them."""

    lease_seconds = Attribute(
        "float: how long a mailbox lease lasts unless refreshed; a session refreshes "
        "it every third of this")

    def prepare():
        """Before the first login: warm password checks and listing queries, so the
        first session after a start does not pay for them. Deferred → None."""

    # -- logins ---------------------------------------------------------------------------
    def check_login(username, password, client_ip):
        """Check a password. Deferred → a result with ``ok`` (bool), ``user`` (the
        canonical user name, or None), ``verified`` (False: refused unchecked because
        ``client_ip`` failed too often — temporary) and ``throttled`` (this failure
        blocked the address). Hashing never runs on the reactor; errors of the store
        fail the Deferred."""

    def is_throttled(client_ip):
        """True when logins from ``client_ip`` are refused now. Synchronous."""

    # -- one session per mailbox (POP3's maildrop lock, RFC 1939 §8) --------------------
    def new_owner():
        """A lease owner name unique to one session (names this process, so leases
        left by a dead process can be told apart). Synchronous."""

    def lock(user, owner):
        """Take ``user``'s mailbox lease for ``owner``. Deferred → True when taken,
        False when another live session holds it (never waits for it). A lease whose
        holder died expires after ``lease_seconds`` and can then be taken."""

    def refresh(user, owner):
        """Extend the lease. Deferred → False when it was lost (expired and taken)."""

    def unlock(user, owner):
        """Release the lease if ``owner`` holds it. Deferred → None."""

    # -- folders --------------------------------------------------------------------------
    def list_folders(user):
        """Deferred → [:class:`FolderStatus`] of every folder of ``user``, by name (an
        unknown user has none)."""

    def folder_status(user, folder):
        """Deferred → :class:`FolderStatus` of (user, folder), failing with
        :class:`NoSuchFolder` when it does not exist."""

    def create_folder(user, folder):
        """Create (user, folder) with a fresh ``uid_validity`` if it does not exist.
        Deferred → its :class:`FolderStatus`."""

    # -- messages -------------------------------------------------------------------------
    def load_listing(user, folder):
        """Deferred → :class:`MessageList` of (user, folder), not-expunged messages in
        UID order (empty when the folder does not exist). Reads no message body;
        an unchanged folder may be answered from a cache."""

    def open_message(message_id):
        """Deferred → :class:`IMessageContent` of one message, or None when it was
        expunged meanwhile."""

    def open_messages(message_ids):
        """Deferred → {message id: :class:`IMessageContent`} of those that still exist,
        in one read (a read-ahead for clients that fetch every message in order)."""

    def get_flags(message_ids):
        """Deferred → {message id: frozenset of flags} of those that still exist."""

    def set_flags(message_ids, flags, mode):
        """Change the flags of ``message_ids``: ``mode`` "add", "remove" or "replace"
        (IMAP STORE ``+FLAGS``, ``-FLAGS``, ``FLAGS``). Deferred → {message id: new
        frozenset} of those that still exist. ValueError for another mode or a flag
        with a space or a control character."""

    def expunge(user, folder, message_ids):
        """Remove messages of (user, folder) for good. Deferred → how many were
        removed (ids already gone or in another folder are skipped). Subscribers of the
        folder are told."""

    def finish(user, owner, message_ids):
        """The POP3 UPDATE state (RFC 1939 §6): expunge ``message_ids`` and release
        the lease, in one transaction. Deferred → how many were removed; fails with
        :class:`LeaseLost` (removing nothing) when ``owner`` no longer holds it."""

    # -- change notifications -------------------------------------------------------------
    def subscribe(user, folder, listener):
        """Call ``listener(status)`` on the reactor thread with the new
        :class:`FolderStatus` whenever (user, folder) changes — a message delivered or
        expunged by any session, in this process or another sharing the database —
        for an IMAP session's untagged ``EXISTS``/``EXPUNGE`` or IDLE. Changes made
        here are told at once, others within the store's poll interval. Returns an
        :class:`IFolderSubscription`. Raises OverflowError when the store watches
        as many folders as it may (its bound); the caller answers "try later"."""
