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
from bisect import bisect_left
from dataclasses import dataclass
from itertools import compress

from zope.interface import Attribute, Interface

__all__ = ["IMailStore", "IMaildropStore", "IMessageContent", "IFolderSubscription",
           "IAppend", "LeaseLost", "NoSuchFolder", "FolderExists", "OverQuota",
           "MessageTooLarge", "FolderStatus", "FolderSnapshot", "FolderChanges",
           "StoreResult", "MessageList", "SYSTEM_FLAGS", "SPECIAL_USE_FOLDERS",
           "canonical_folder"]

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"})


class LeaseLost(Exception):
    """A lease this node or session held (a mailbox, or a spool row) expired and
    another one took it over: the operation changed nothing."""


# The folders every IMAP user has (RFC 6154 special use), created at login.
SPECIAL_USE_FOLDERS = (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"),
                       ("Junk", "\\Junk"), ("Archive", "\\Archive"))


def canonical_folder(name: str) -> str:
    """The stored name of a folder: ``INBOX`` in any case is ``INBOX`` (RFC 3501
    §5.1); every other name is case-sensitive. The hierarchy delimiter is ``/``."""
    return "INBOX" if name.upper() == "INBOX" else name


class NoSuchFolder(LookupError):
    """The user has no folder of that name (IMAP ``NO [NONEXISTENT]``, or
    ``[TRYCREATE]`` for APPEND/COPY/MOVE)."""


class FolderExists(ValueError):
    """A folder of that name exists already (IMAP ``NO [ALREADYEXISTS]``)."""


class OverQuota(ValueError):
    """The user's quota cannot take the message(s) (IMAP ``NO [OVERQUOTA]``).
    ``usage`` and ``limit`` are in octets, ``size`` is what was to be added."""

    def __init__(self, user: str, usage: int, limit: int, size: int):
        super().__init__(f"{user}: quota {limit} octets, used {usage}, adding {size}")
        self.user, self.usage, self.limit, self.size = user, usage, limit, size


class MessageTooLarge(ValueError):
    """An appended message is larger than the store takes (``limit`` octets; IMAP
    ``NO [TOOBIG]``, RFC 4469/7889)."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"the message has {size} octets or more; at most {limit} are taken")
        self.size, self.limit = size, limit


@dataclass(frozen=True)
class FolderStatus:
    """One folder's state. Every change of the folder — a message added, a flag
    changed, a message expunged — raises ``highest_modseq`` (RFC 7162), so equal
    states mean the same messages with the same flags. ``special_use`` is the folder's
    RFC 6154 attribute (``"\\Sent"``…) or None."""

    name: str
    uid_validity: int
    uid_next: int
    messages: int
    highest_modseq: int = 0
    special_use: str | None = None


def _interned(cache: dict, text: str) -> frozenset:
    flags = cache.get(text)
    if flags is None:
        flags = cache[text] = frozenset(text.split())
    return flags


class FolderSnapshot:
    """The messages of one folder at one moment, in UID order (IMAP SELECT).

    ``status`` is the folder's :class:`FolderStatus` (``messages`` is ``len(ids)``).
    The parallel arrays ``ids`` (message ids), ``uids``, ``sizes`` (wire octets) and
    ``modseqs`` are ``array('q')``, ``dates`` (internal dates, epoch seconds) is
    ``array('d')``, and ``flags`` is a list of frozensets, equal sets being one object.
    A snapshot is never changed once built: sessions may share one (make your own
    arrays to change). ``chunks`` are lists of ``(id, uid, size, date, modseq,
    flags text)`` rows in UID order.
    """

    __slots__ = ("status", "ids", "uids", "sizes", "dates", "modseqs", "flags")

    def __init__(self, status: FolderStatus, chunks=()):
        self.status = status
        self.ids, self.uids, self.sizes = array("q"), array("q"), array("q")
        self.dates, self.modseqs = array("d"), array("q")
        self.flags: list[frozenset] = []
        interned: dict[str, frozenset] = {}
        for rows in chunks:
            if not rows:
                continue
            ids, uids, sizes, dates, modseqs, flags = zip(*rows)
            self.ids.extend(ids)
            self.uids.extend(uids)
            self.sizes.extend(sizes)
            self.dates.extend(dates)
            self.modseqs.extend(modseqs)
            self.flags += [_interned(interned, text) for text in flags]

    def __len__(self) -> int:
        return len(self.ids)

    def with_changes(self, changes: FolderChanges) -> FolderSnapshot:
        """A new snapshot: this one with ``changes`` applied (expunged UIDs removed,
        changed rows updated, new ones appended; what the changes repeat is a no-op).
        ``changes.expunged_uids`` must not be None."""
        uids, gone = self.uids, changes.expunged_uids or ()
        last = uids[-1] if uids else 0
        new = FolderSnapshot(changes.status)
        if gone:
            keep = bytearray(b"\x01") * len(uids)
            for uid in gone:
                i = bisect_left(uids, uid)
                if i < len(uids) and uids[i] == uid:
                    keep[i] = 0
            for name in ("ids", "uids", "sizes", "dates", "modseqs"):
                old = getattr(self, name)
                getattr(new, name).extend(compress(old, keep))
            new.flags = list(compress(self.flags, keep))
        else:
            for name in ("ids", "uids", "sizes", "dates", "modseqs"):
                getattr(new, name).extend(getattr(self, name))
            new.flags = list(self.flags)
        interned: dict[str, frozenset] = {}
        added = []
        for row in changes.updated:
            mid, uid, size, date, modseq, flags = row
            if uid > last:
                added.append(row)
                continue
            i = bisect_left(new.uids, uid)
            if i < len(new.uids) and new.uids[i] == uid:
                new.modseqs[i] = modseq
                new.flags[i] = _interned(interned, flags) if isinstance(flags, str) else flags
        for mid, uid, size, date, modseq, flags in added:
            new.ids.append(mid)
            new.uids.append(uid)
            new.sizes.append(size)
            new.dates.append(date)
            new.modseqs.append(modseq)
            new.flags.append(_interned(interned, flags) if isinstance(flags, str) else flags)
        return new


@dataclass(frozen=True)
class FolderChanges:
    """What changed in a folder since a modseq (IMAP CONDSTORE/QRESYNC, IDLE, NOOP).

    ``updated``: ``(id, uid, size, date, modseq, flags)`` of every message whose modseq
    is above it — new messages and changed flags — in UID order (``flags`` a
    frozenset). ``expunged_uids``:
    the sorted UIDs expunged since, or None when the store no longer knows (its
    tombstones of that time are purged: SELECT again).

    Changes racing the read may be told twice: a message the caller already has
    with the same flags, a "new" UID it already holds, an expunged UID it never saw.
    Callers treat those as no-ops.
    """

    status: FolderStatus
    updated: list
    expunged_uids: list[int] | None


@dataclass(frozen=True)
class StoreResult:
    """The outcome of :meth:`IMailStore.store_flags`: ``updated`` {message id: (flags,
    modseq)} of every message that exists and passed the UNCHANGEDSINCE test (changed
    or not), ``failed`` the ids that failed it (RFC 7162 §3.1.3: modified since)."""

    updated: dict
    failed: set


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


class IAppend(Interface):
    """One message being appended (IMAP APPEND), from :meth:`IMailStore.begin_append`."""

    size = Attribute("int: octets written so far")

    def write(data):
        """Add bytes of the message (CRLF line ends). Called on the reactor thread:
        it buffers, or writes to an unsynced file, never waits for the disk. Past the
        store's ``max_message_size`` the rest is only counted and :meth:`finish`
        fails with :class:`MessageTooLarge`."""

    def finish(flags, internal_date):
        """Store the message in the folder with ``flags`` and ``internal_date`` (epoch
        seconds; None: now), after making its body durable. Deferred → ``(uid_validity,
        uid)`` (RFC 4315 APPENDUID). Fails with :class:`NoSuchFolder` (``[TRYCREATE]``),
        :class:`OverQuota`, :class:`MessageTooLarge` or ValueError (a bad flag); then
        nothing is kept."""

    def abort():
        """Throw away what was written (the client went away). Idempotent."""


class IMaildropStore(Interface):
    """The users' mailboxes as POP3 sees them (the part of :class:`IMailStore` a
    single-folder maildrop needs)."""

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

    def create_folder(user, folder, exclusive=False):
        """Create (user, folder) with a fresh ``uid_validity`` if it does not exist,
        and every missing superior name (``a`` and ``a/b`` for ``a/b/c``, RFC 3501
        §6.3.3). Deferred → its :class:`FolderStatus`; with ``exclusive`` an existing
        folder fails it with :class:`FolderExists`. ValueError for an empty name, a
        name with an empty level, or one longer than the store takes."""

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
        :class:`FolderStatus` whenever (user, folder) changes — a message delivered,
        expunged or its flags changed (``highest_modseq`` moves) by any session, in
        this process or another sharing the database — for an IMAP session's
        untagged ``EXISTS``/``EXPUNGE``/``FETCH`` or IDLE; ``listener(None)`` when the
        folder is deleted or renamed away. Changes made here are told at once, others
        within a second (PostgreSQL LISTEN/NOTIFY; SQLite a check of the database's
        change counter a few times a second). Returns an
        :class:`IFolderSubscription`. Raises OverflowError when the store watches
        as many folders as it may (its bound); the caller answers "try later"."""


class IMailStore(IMaildropStore):
    """The users' mailboxes as a retrieval server sees them: POP3's maildrop and
    IMAP's folders, flags and modseqs on the same messages.

    Folder names are str with ``/`` as hierarchy delimiter; ``INBOX`` is
    case-insensitive (:func:`canonical_folder`). Each folder's UIDs ascend strictly
    and are never reused; its ``uid_validity`` stays across restarts and differs
    from that of every folder the store ever had (a folder deleted and created again
    gets a new one). Every change raises the folder's ``highest_modseq`` and gives
    the changed messages that modseq; an expunge leaves a tombstone (UID, modseq) so
    :meth:`changes` can report it, at most ``tombstone_limit`` per folder.
    """

    max_message_size = Attribute(
        "int: the largest message APPEND takes, in octets (RFC 7889 APPENDLIMIT)")
    changes_committed = Attribute(
        "int that grows each time a change to a folder's messages made through this "
        "store (expunge, move, copy, append, POP3 update; not flags) is committed, on "
        "the reactor thread before the caller hears of the commit: what a session "
        "read before may be stale once it moved (IMAP FETCH's read-ahead)")

    # -- folders --------------------------------------------------------------------------
    def delete_folder(user, folder):
        """Delete (user, folder) and its messages (RFC 3501 §6.3.4). Its inferior
        names stay: a listing then shows the deleted name only as their parent
        (``\\Noselect``). Deferred → None; fails with :class:`NoSuchFolder`, or
        ValueError for INBOX (``NO``)."""

    def rename_folder(user, old, new):
        """Rename ``old`` to ``new`` with its inferior names (``old/x`` becomes
        ``new/x``), creating missing superiors of ``new``; messages keep their UIDs
        and the folder its ``uid_validity``; subscriptions follow. Renaming INBOX
        moves its messages to ``new`` and leaves an empty INBOX with a fresh
        ``uid_validity``; INBOX's inferiors stay (RFC 3501 §6.3.5). Deferred → None;
        fails with :class:`NoSuchFolder` (``old``), :class:`FolderExists` (``new``,
        or ``new`` inside ``old``) or ValueError (``new`` is INBOX or a bad name)."""

    def ensure_user_folders(user):
        """INBOX and the special-use folders (:data:`SPECIAL_USE_FOLDERS`: Sent,
        Drafts, Trash, Junk, Archive, with their attribute), created and subscribed
        when missing. Idempotent, one read when all are there: called at every IMAP
        login. Deferred → None."""

    def subscriptions(user):
        """Deferred → set of the folder names ``user`` subscribed (names that need
        not exist, RFC 3501 §6.3.6)."""

    def set_subscribed(user, folder, on):
        """Subscribe (``on`` True) or unsubscribe ``folder``. Deferred → None.
        ValueError beyond the store's bound of subscriptions per user."""

    # -- IMAP views of a folder ---------------------------------------------------------
    def read_messages(message_ids):
        """Deferred → {message id: its octets (trace prefix and blob)} of those that
        still exist, read in one go off the reactor (IMAP FETCH and SEARCH of batches
        of small messages; the caller bounds the batch's octets)."""

    def select(user, folder):
        """Deferred → :class:`FolderSnapshot` of (user, folder) (SELECT/EXAMINE);
        fails with :class:`NoSuchFolder`. Reads no body; an unchanged folder is
        answered from a cache, a changed one from the cached snapshot and
        :meth:`changes`, so a SELECT of 100,000 messages reads only what changed."""

    def changes(user, folder, since_modseq):
        """Deferred → :class:`FolderChanges` since ``since_modseq`` (the
        ``highest_modseq`` of the caller's last status); fails with
        :class:`NoSuchFolder`."""

    def read_headers(message_id, limit):
        """Deferred → the header block of a message as FETCH sends it (trace prefix
        and the blob's header up to and including the empty line), at most ``limit``
        octets; None when the message is gone. Reads only the start of the body."""

    def read_headers_of(message_ids, limit):
        """Deferred → {message id: header block as :meth:`read_headers` gives it} of
        those of ``message_ids`` that still exist, in one store read (FETCH of
        headers and SEARCH of header keys, a batch at a time)."""

    # -- changing messages --------------------------------------------------------------
    def store_flags(message_ids, flags, mode, unchanged_since=None):
        """Change flags as :meth:`set_flags` (``mode`` "add", "remove", "replace"),
        giving each message whose flags change a new modseq (one per folder per call).
        With ``unchanged_since`` (RFC 7162 UNCHANGEDSINCE) a message whose modseq is
        above it is left alone and reported failed. Deferred → :class:`StoreResult`.
        ValueError for a bad mode or flag. Subscribers are told."""

    def expunge_messages(user, folder, message_ids):
        """Remove those of ``message_ids`` that are in (user, folder), leaving
        tombstones with a new modseq. Deferred → list of the removed ids. Subscribers
        are told."""

    def begin_append(user, folder):
        """An :class:`IAppend` for one message to be added to (user, folder)."""

    def copy_messages(user, message_ids, dest_folder):
        """Copy messages of ``user`` (the ids that still exist, in the order given)
        into ``dest_folder`` with their flags and internal dates; the bodies are
        shared, not copied. Deferred → ``(uid_validity, [(source id, new uid), …])``
        (RFC 4315 COPYUID). Fails with :class:`NoSuchFolder` (``[TRYCREATE]``) or
        :class:`OverQuota`; then nothing is copied."""

    def move_messages(user, folder, message_ids, dest_folder):
        """As :meth:`copy_messages` for the ids in (user, folder), and expunge them
        from ``folder`` in the same transaction (RFC 6851)."""

    def quota(user):
        """Deferred → ``(usage in octets, limit in octets or None)``."""
