"""The authenticated-state commands of an IMAP session (RFC 3501 §6.3).

SELECT/EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE, LIST/LSUB (with ``*``
and ``%`` patterns, the hierarchy delimiter ``/``, RFC 6154 special-use attributes,
``\\HasChildren``/``\\HasNoChildren`` and RFC 5819 ``RETURN (STATUS …)``), STATUS,
APPEND (UIDPLUS ``APPENDUID``) and NAMESPACE. Every one answers from the
:class:`~mailet_mta.mailstore.IMailStore` Deferreds.
"""

from __future__ import annotations

import re

from twisted.internet import defer

from ..mailstore import FolderExists, MessageTooLarge, NoSuchFolder, OverQuota
from .encoding import (
    astring_to_str,
    decode_mailbox,
    encode_mailbox,
    format_flags,
    parse_date_time,
    quoted_or_literal,
)
from .errors import BadCommand, CommandRefused

__all__ = ["MailboxCommands", "store_refusal", "folder_pattern"]

DELIMITER = "/"
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")
MAX_PATTERN = 1024


def store_refusal(exc: Exception, missing: str = "NONEXISTENT"):
    """The ``NO`` for an exception of the mail store, or None for an unexpected one.
    ``missing`` is the code for a folder that does not exist (``TRYCREATE`` where
    creating it would help: APPEND, COPY, MOVE)."""
    if isinstance(exc, NoSuchFolder):
        return CommandRefused("no such mailbox", missing)
    if isinstance(exc, FolderExists):
        return CommandRefused("the mailbox exists already", "ALREADYEXISTS")
    if isinstance(exc, OverQuota):
        return CommandRefused("the quota does not allow it", "OVERQUOTA")
    if isinstance(exc, MessageTooLarge):
        return CommandRefused("the message is too large", "TOOBIG")
    if isinstance(exc, ValueError):
        return CommandRefused(str(exc) or "not possible", "CANNOT")
    return None


def _quota_line(usage: int, limit: int) -> bytes:
    """``* QUOTA "" (STORAGE used limit)``, in units of 1,024 octets (RFC 9208 §5.1)."""
    return b'* QUOTA "" (STORAGE %d %d)\r\n' % (-(-usage // 1024), limit // 1024)


def _refuse_store_errors(failure, missing: str = "NONEXISTENT"):
    refusal = store_refusal(failure.value, missing)
    if refusal is None:
        return failure
    raise refusal


def folder_pattern(reference: str, pattern: str) -> re.Pattern:
    """The regex of a LIST pattern (``*`` anything, ``%`` anything but the delimiter)
    relative to ``reference``; INBOX matches in any case."""
    if reference and not reference.endswith(DELIMITER) and pattern:
        reference += DELIMITER
    full = reference + pattern
    parts = []
    for ch in full:
        parts.append(".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch))
    text = "".join(parts)
    if full[:5].upper() == "INBOX":
        text = "(?i:INBOX)" + "".join(parts[5:])
    return re.compile(text + r"\Z", re.DOTALL)


class _StreamedMessage:
    """An APPEND literal being written to the store as it arrives (it stands in the
    command's arguments for the octets)."""

    def __init__(self, folder: str, append, size: int):
        self.folder, self.append, self.size = folder, append, size

    def write(self, data: bytes) -> None:
        self.append.write(data)

    def abort(self) -> None:
        self.append.abort()


class MailboxCommands:
    """Commands of the authenticated state, mixed into the session."""

    def mailbox_name(self, token) -> str:
        name = decode_mailbox(token, "UTF8=ACCEPT" in self.enabled)
        if name.upper() == "INBOX":
            return "INBOX"
        return name.rstrip(DELIMITER) if len(name) > 1 else name

    def wire_name(self, name: str) -> bytes:
        return quoted_or_literal(encode_mailbox(name, "UTF8=ACCEPT" in self.enabled))

    # -- SELECT / EXAMINE -----------------------------------------------------------------
    def do_SELECT(self, tag, args):
        return self._select(tag, args, read_only=False)

    def do_EXAMINE(self, tag, args):
        return self._select(tag, args, read_only=True)

    def _select(self, tag, args, read_only: bool):
        if not args or len(args) > 2:
            raise BadCommand("SELECT takes a mailbox name and optional parameters")
        qresync = None
        if len(args) == 2:
            qresync = self._select_params(args[1])
        name = self.mailbox_name(args[0])
        if self.selected is not None:
            self._close_mailbox()
            self.state = "authenticated"
            # RFC 7162 §3.2.11: the boundary between the old mailbox's responses and
            # the new one's, sent by a server that offers CONDSTORE/QRESYNC.
            self.untagged("OK [CLOSED] previous mailbox closed")
        d = self.backend.select(self.user, name)
        d.addErrback(_refuse_store_errors)
        d.addCallback(self._opened, name, read_only)
        if qresync is not None:
            d.addCallback(self._resync, qresync)
        return d

    def _select_params(self, params):
        """SELECT's (CONDSTORE) or (QRESYNC (…)): the QresyncParams or None."""
        from .qresync import parse_qresync

        if not isinstance(params, list) or not params:
            raise BadCommand("SELECT parameters are a parenthesised list")
        qresync = None
        i = 0
        while i < len(params):
            word = params[i].upper() if isinstance(params[i], str) else ""
            if word == "CONDSTORE":
                self.enabled.add("CONDSTORE")
                i += 1
            elif word == "QRESYNC" and i + 1 < len(params) and qresync is None:
                if "QRESYNC" not in self.enabled:
                    raise BadCommand("ENABLE QRESYNC first (RFC 7162 §3.2.5)")
                qresync = parse_qresync(params[i + 1])
                i += 2
            else:
                raise BadCommand("SELECT parameters are CONDSTORE and QRESYNC")
        return qresync

    def _resync(self, result, qresync):
        """RFC 7162 §3.2.5.1: what changed since the client's modseq, told before the
        SELECT's tagged OK: VANISHED (EARLIER), then FETCH (UID FLAGS MODSEQ) of every
        message changed or added since. Another UIDVALIDITY: nothing (the client
        forgets what it had)."""
        from .qresync import format_spans, vanished_spans

        sel = self.selected
        if sel is None or qresync.uid_validity != sel.uid_validity or self._lost:
            return result
        d = self.backend.changes(self.user, sel.name, qresync.modseq)

        def tell(changes):
            if sel is not self.selected or self._lost:
                return result
            spans = vanished_spans(changes.expunged_uids, sel.uids, sel.uid_next,
                                   qresync.known_uids, qresync.seq_match)
            out = [b"* VANISHED (EARLIER) %s\r\n" % format_spans(spans)] if spans else []
            for row in changes.updated:
                uid = row[1]
                i = sel.index_of_uid(uid)
                if i is None:
                    continue
                out.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                           % (i + 1, uid, format_flags(sel.flags[i]), sel.modseqs[i]))
            self.write(b"".join(out))
            return result
        return d.addCallback(tell)

    def _opened(self, snapshot, name: str, read_only: bool):
        from .selected import SelectedMailbox

        if self._lost:
            return None
        sel = SelectedMailbox(name, snapshot, read_only)
        self.selected = sel
        self.state = "selected"
        status = snapshot.status
        keywords = sorted(sel.keywords())
        system = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
        flags = " ".join(system + keywords)
        first_unseen = sel.first_unseen()
        lines = [f"* FLAGS ({flags})",
                 f"* OK [PERMANENTFLAGS ({flags} \\*)] flags permitted" if not read_only
                 else "* OK [PERMANENTFLAGS ()] read-only mailbox",
                 f"* {len(sel)} EXISTS", "* 0 RECENT"]
        if first_unseen:
            lines.append(f"* OK [UNSEEN {first_unseen}] first unseen message")
        lines += [f"* OK [UIDVALIDITY {status.uid_validity}] UIDs valid",
                  f"* OK [UIDNEXT {status.uid_next}] predicted next UID",
                  f"* OK [HIGHESTMODSEQ {status.highest_modseq}] highest"]
        self.write("".join(line + "\r\n" for line in lines).encode("utf-8"))
        try:
            sel.subscription = self.backend.subscribe(self.user, name, self._folder_changed)
        except OverflowError:
            sel.subscription = None        # too many watched folders: changes at NOOP
        code = "READ-ONLY" if read_only else "READ-WRITE"
        return (code, ("EXAMINE" if read_only else "SELECT") + " completed")

    def _folder_changed(self, status) -> None:
        sel = self.selected
        if sel is None or self._lost:
            return
        if status is not None and status.highest_modseq == sel.highest_modseq \
                and status.uid_next == sel.uid_next:
            return
        sel.dirty = True
        self.told_of_change()

    def _close_mailbox(self) -> None:
        self.drop_read_ahead()
        sel, self.selected = self.selected, None
        if sel is not None and sel.subscription is not None:
            sel.subscription.cancel()

    # -- folders --------------------------------------------------------------------------
    def do_CREATE(self, tag, args):
        if len(args) != 1:
            raise BadCommand("CREATE takes a mailbox name")
        name = self.mailbox_name(args[0])
        if name == "INBOX":
            raise CommandRefused("INBOX exists always", "ALREADYEXISTS")
        d = self.backend.create_folder(self.user, name, exclusive=True)
        d.addErrback(_refuse_store_errors)
        return d.addCallback(lambda _: "CREATE completed")

    def do_DELETE(self, tag, args):
        if len(args) != 1:
            raise BadCommand("DELETE takes a mailbox name")
        name = self.mailbox_name(args[0])
        if name == "INBOX":
            raise CommandRefused("INBOX cannot be deleted", "CANNOT")
        if self.selected is not None and self.selected.name == name:
            raise CommandRefused("the mailbox is selected; close it first", "INUSE")
        d = self.backend.delete_folder(self.user, name)
        d.addErrback(_refuse_store_errors)
        return d.addCallback(lambda _: "DELETE completed")

    def do_RENAME(self, tag, args):
        if len(args) != 2:
            raise BadCommand("RENAME takes two mailbox names")
        old, new = self.mailbox_name(args[0]), self.mailbox_name(args[1])
        if new == "INBOX":
            raise CommandRefused("nothing can be renamed to INBOX", "ALREADYEXISTS")
        d = self.backend.rename_folder(self.user, old, new)
        d.addErrback(_refuse_store_errors)
        return d.addCallback(lambda _: "RENAME completed")

    def do_SUBSCRIBE(self, tag, args):
        return self._subscribe(args, True)

    def do_UNSUBSCRIBE(self, tag, args):
        return self._subscribe(args, False)

    def _subscribe(self, args, on: bool):
        if len(args) != 1:
            raise BadCommand("SUBSCRIBE/UNSUBSCRIBE take a mailbox name")
        name = self.mailbox_name(args[0])
        d = self.backend.set_subscribed(self.user, name, on)
        d.addErrback(_refuse_store_errors)
        return d.addCallback(lambda _: ("SUBSCRIBE" if on else "UNSUBSCRIBE")
                             + " completed")

    def do_NAMESPACE(self, tag, args):
        self.untagged('NAMESPACE (("" "/")) NIL NIL')
        return "NAMESPACE completed"

    # -- LIST / LSUB ----------------------------------------------------------------------
    def do_LIST(self, tag, args):
        select_opts: list[str] = []
        if args and isinstance(args[0], list):         # RFC 5258 selection options
            select_opts = [astring_to_str(o).upper() for o in args[0]]
            args = args[1:]
        if len(args) < 2:
            raise BadCommand("LIST takes a reference and a mailbox pattern")
        return_opts: list = []
        if len(args) > 2:
            if len(args) != 4 or not isinstance(args[2], str) \
                    or args[2].upper() != "RETURN" or not isinstance(args[3], list):
                raise BadCommand("LIST reference pattern [RETURN (options)]")
            return_opts = args[3]
        reference = decode_mailbox(args[0], "UTF8=ACCEPT" in self.enabled)
        patterns = args[1] if isinstance(args[1], list) else [args[1]]
        texts = [decode_mailbox(p, "UTF8=ACCEPT" in self.enabled) for p in patterns]
        if len(texts) == 1 and texts[0] == "":
            self.untagged(b'LIST (\\Noselect) "/" ""')
            return "LIST completed"
        status_items = self._list_status_items(return_opts)
        subscribed_only = "SUBSCRIBED" in select_opts
        mark = subscribed_only or any(isinstance(o, str) and o.upper() == "SUBSCRIBED"
                                      for o in return_opts)
        d = self._folders_and_subscriptions()
        d.addCallback(self._send_list, "LIST", reference, texts, status_items,
                      subscribed_only, mark)
        return d

    def _list_status_items(self, return_opts: list) -> list[str]:
        items: list[str] = []
        i = 0
        while i < len(return_opts):
            opt = return_opts[i]
            if isinstance(opt, str) and opt.upper() == "STATUS" \
                    and i + 1 < len(return_opts) and isinstance(return_opts[i + 1], list):
                items = self._status_items(return_opts[i + 1])
                i += 2
                continue
            if not isinstance(opt, str) or opt.upper() not in (
                    "SPECIAL-USE", "SUBSCRIBED", "CHILDREN"):
                raise BadCommand("unknown LIST return option")
            i += 1
        return items

    def do_LSUB(self, tag, args):
        if len(args) != 2:
            raise BadCommand("LSUB takes a reference and a mailbox pattern")
        reference = decode_mailbox(args[0], "UTF8=ACCEPT" in self.enabled)
        pattern = decode_mailbox(args[1], "UTF8=ACCEPT" in self.enabled)
        d = self._folders_and_subscriptions()
        d.addCallback(self._send_list, "LSUB", reference, [pattern], [], True, False)
        return d

    def _folders_and_subscriptions(self) -> defer.Deferred:
        return defer.gatherResults(
            [self.backend.list_folders(self.user), self.backend.subscriptions(self.user)],
            consumeErrors=True).addErrback(lambda f: f.value.subFailure)

    @defer.inlineCallbacks
    def _send_list(self, found, verb: str, reference: str, patterns: list[str],
                   status_items: list[str], subscribed_only: bool, mark_subscribed: bool):
        folders, subscribed = found
        by_name = {f.name: f for f in folders}
        names = set(by_name)
        # Superiors of existing folders that are no folders themselves (\Noselect).
        for name in list(names):
            parts = name.split(DELIMITER)
            for i in range(1, len(parts)):
                names.add(DELIMITER.join(parts[:i]))
        if subscribed_only:
            names = {n for n in names if n in subscribed} | set(subscribed)
        regexes = [folder_pattern(reference, p[:MAX_PATTERN]) for p in patterns]
        parents = {n.rsplit(DELIMITER, 1)[0] for n in by_name if DELIMITER in n}
        out = []
        for name in sorted(names, key=lambda n: (n != "INBOX", n)):
            if not any(r.match(name) for r in regexes):
                continue
            attrs = []
            folder = by_name.get(name)
            if folder is None:
                attrs.append("\\NonExistent" if verb == "LIST" and subscribed_only
                             and name in subscribed else "\\Noselect")
            attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
            special = getattr(folder, "special_use", None)
            if special:
                attrs.append(special)
            if mark_subscribed and name in subscribed:
                attrs.append("\\Subscribed")
            out.append(b"* %s (%s) \"/\" %s\r\n" % (verb.encode(), " ".join(attrs).encode(),
                                                    self.wire_name(name)))
        self.write(b"".join(out))
        if status_items:
            for name in sorted(n for n in names if n in by_name
                               and any(r.match(n) for r in regexes)):
                try:
                    yield self._send_status(name, status_items)
                except CommandRefused:
                    continue
        return f"{verb} completed"

    # -- STATUS ---------------------------------------------------------------------------
    def _status_items(self, tokens) -> list[str]:
        if not isinstance(tokens, list) or not tokens:
            raise BadCommand("STATUS items are a parenthesised list")
        items = [astring_to_str(t).upper() for t in tokens]
        for item in items:
            if item not in STATUS_ITEMS:
                raise BadCommand(f"unknown STATUS item {item[:30]}")
        return items

    def do_STATUS(self, tag, args):
        if len(args) != 2:
            raise BadCommand("STATUS takes a mailbox name and a list of items")
        name = self.mailbox_name(args[0])
        items = self._status_items(args[1])
        return self._send_status(name, items).addCallback(lambda _: "STATUS completed")

    def _send_status(self, name: str, items: list[str]) -> defer.Deferred:
        if "UNSEEN" in items:
            d = self.backend.select(self.user, name)
            d.addCallback(lambda snap: (snap.status, sum(
                1 for f in snap.flags if "\\Seen" not in f)))
        else:
            d = self.backend.folder_status(self.user, name)
            d.addCallback(lambda status: (status, 0))
        d.addErrback(_refuse_store_errors)

        def answer(result):
            status, unseen = result
            values = {"MESSAGES": status.messages, "RECENT": 0,
                      "UIDNEXT": status.uid_next, "UIDVALIDITY": status.uid_validity,
                      "UNSEEN": unseen, "HIGHESTMODSEQ": status.highest_modseq}
            body = " ".join(f"{item} {values[item]}" for item in items)
            self.write(b"* STATUS %s (%s)\r\n" % (self.wire_name(name), body.encode()))
        return d.addCallback(answer)

    # -- GETQUOTA / GETQUOTAROOT (RFC 9208) -------------------------------------------------
    # One quota root per user, named "", over all of the user's folders: the store's
    # quota (users' quota in octets; STORAGE is told in units of 1,024 octets, usage
    # rounded up, the limit down). A user without a quota has no quota root. SETQUOTA
    # is not offered (no QUOTASET): quotas are set by the administrator.
    def do_GETQUOTAROOT(self, tag, args):
        if len(args) != 1:
            raise BadCommand("GETQUOTAROOT takes a mailbox name")
        name = self.mailbox_name(args[0])
        d = self.backend.folder_status(self.user, name)
        d.addErrback(_refuse_store_errors)
        d.addCallback(lambda _: self.backend.quota(self.user))

        def answer(quota):
            usage, limit = quota
            if limit is None:
                self.write(b"* QUOTAROOT %s\r\n" % self.wire_name(name))
            else:
                self.write(b'* QUOTAROOT %s ""\r\n' % self.wire_name(name)
                           + _quota_line(usage, limit))
            return "GETQUOTAROOT completed"
        return d.addCallback(answer)

    def do_GETQUOTA(self, tag, args):
        if len(args) != 1:
            raise BadCommand("GETQUOTA takes a quota root name")
        if astring_to_str(args[0]) != "":
            raise CommandRefused("no such quota root (the user's is \"\")", "NONEXISTENT")

        def answer(quota):
            usage, limit = quota
            if limit is None:
                raise CommandRefused("no quota applies to this user", "NONEXISTENT")
            self.write(_quota_line(usage, limit))
            return "GETQUOTA completed"
        return self.backend.quota(self.user).addCallback(answer)

    # -- APPEND ---------------------------------------------------------------------------
    def append_sink(self, args, size: int):
        """Where a large APPEND literal goes as it arrives (the reader asks): the
        store's IAppend of the named folder, or None (the literal is refused) before
        login or when the arguments before the literal are no mailbox name."""
        if self.state not in ("authenticated", "selected") or not args:
            return None
        try:
            name = self.mailbox_name(args[0])
        except BadCommand:
            return None
        return _StreamedMessage(name, self.backend.begin_append(self.user, name), size)

    def do_APPEND(self, tag, args):
        streamed = [a for a in args if isinstance(a, _StreamedMessage)]
        if streamed and (len(args) < 2 or streamed != [args[-1]]):
            for message in streamed:
                message.abort()
            raise BadCommand("APPEND takes one message literal, last")
        if streamed:
            return self._append(args, args[-1])
        if len(args) < 2 or not isinstance(args[-1], bytes):
            raise BadCommand("APPEND takes a mailbox, optional flags and date, and a "
                             "message literal")
        name = self.mailbox_name(args[0])
        message = args[-1]
        if not message:
            raise BadCommand("an empty message cannot be appended")
        limit = getattr(self.backend, "max_message_size", 0) or 0
        if limit and len(message) > limit:
            raise CommandRefused(f"the message is larger than {limit} octets", "TOOBIG")
        append = self.backend.begin_append(self.user, name)
        try:
            append.write(message)
        except Exception:
            append.abort()
            raise
        return self._append(args, _StreamedMessage(name, append, len(message)))

    def _append(self, args, streamed):
        """APPEND of a message already written to ``streamed.append``."""
        append = streamed.append
        try:
            name = self.mailbox_name(args[0])
            if name != streamed.folder:
                raise BadCommand("APPEND's mailbox changed under its literal")
            flags: list[str] = []
            date = None
            for token in args[1:-1]:
                if isinstance(token, list):
                    flags = [astring_to_str(f) for f in token]
                    if any(f.lower() == "\\recent" for f in flags):
                        raise BadCommand("\\Recent cannot be stored")
                else:
                    date = parse_date_time(token)
        except Exception:
            append.abort()
            raise
        d = append.finish(frozenset(flags), date)
        d.addErrback(_refuse_store_errors, "TRYCREATE")

        def done(result):
            validity, uid = result
            if self.selected is not None and self.selected.name == name:
                self.selected.dirty = True
            return (f"APPENDUID {validity} {uid}", "APPEND completed")
        return d.addCallback(done)
