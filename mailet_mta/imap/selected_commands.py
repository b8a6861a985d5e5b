"""The selected-state commands of an IMAP session (RFC 3501 §6.4 and extensions).

FETCH, STORE, SEARCH, COPY, MOVE (RFC 6851), EXPUNGE, CLOSE, UNSELECT (RFC 3691),
CHECK and their UID forms (UIDPLUS: ``UID EXPUNGE``, ``COPYUID``), with CONDSTORE's
``CHANGEDSINCE``/``UNCHANGEDSINCE``/``MODSEQ`` (RFC 7162), and the untagged updates
that tell the client what other sessions changed (:meth:`sync_changes`).

Rendering (MIME parsing for ENVELOPE/BODYSTRUCTURE, header and text search) runs
through ``self.run`` off the reactor, in batches; each batch is written only once the
transport has room (``wait_for_drain``), so a client that does not read holds one
batch and the transport's buffer, however many messages it asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

from twisted.internet import defer
from twisted.logger import Logger

from ..mailstore import NoSuchFolder
from .encoding import astring_to_str, format_flags
from .errors import BadCommand, CommandRefused
from .mailbox_commands import store_refusal
from .read_ahead import ReadAhead
from .sequence import format_uid_set, parse_set

__all__ = ["SelectedCommands"]

log = Logger(namespace="mailet_mta.imap")

META_BATCH = 500            # messages searched (×10) per worker call when no body is needed
META_ROWS = 4096            # FETCH responses rendered per worker call when no body is needed
META_FIRST_ROWS = 256       # … in the first call, so the first octets leave at once
BODY_BATCH_OCTETS = 1 << 20  # octets of messages read per batch when bodies are needed
CHUNK = 64 * 1024
STREAM_OVER = 256 * 1024    # larger messages' BODY[]/RFC822 are written from the blob
HEADER_LIMIT = 1 << 20      # octets of a header block read for FETCH/SEARCH
INLINE_OCTETS = 64 * 1024   # a batch of BODY[]/RFC822 this small is rendered in place
FEW_WHOLE = 8               # a FETCH of at most this many whole messages reads ahead
_STORE_MODES = {"FLAGS": "replace", "+FLAGS": "add", "-FLAGS": "remove"}


@dataclass
class _Changes:
    status: object
    updated: list
    expunged_uids: list | None


class _Source:
    """One message's bytes for :func:`fetch.render` and :class:`search` records."""

    def __init__(self, headers: bytes | None, full: bytes | None):
        self._headers, self._full = headers, full

    def headers(self) -> bytes:
        if self._headers is None:
            full = self._full or b""
            end = full.find(b"\r\n\r\n")
            self._headers = full if end < 0 else full[:end + 4]
        return self._headers

    def full(self) -> bytes:
        return self._full if self._full is not None else self.headers()


class _Record(_Source):
    """A message as a search program sees it."""

    def __init__(self, sel, index: int, headers=None, full=None):
        super().__init__(headers, full)
        self.seq = index + 1
        self.uid = sel.uids[index]
        self.flags = sel.flags[index]
        self.size = sel.sizes[index]
        self.internal_date = sel.dates[index]
        self.modseq = sel.modseqs[index]
        self.recent = sel.is_recent(index)
        self.max_seq = len(sel)
        self.max_uid = sel.uids[-1] if len(sel) else 0


def _read_all(content) -> bytes:
    chunks = content.chunks(CHUNK)
    try:
        return b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


class SelectedCommands:
    """Commands of the selected state, mixed into the session."""

    _sync_lock: defer.DeferredLock | None = None
    _read_ahead: ReadAhead | None = None

    def drop_read_ahead(self) -> None:
        """Forget the messages read ahead (the folder changed or was closed)."""
        if self._read_ahead is not None:
            self._read_ahead.clear()

    # -- which messages ------------------------------------------------------------------
    def _indexes(self, token, uid: bool) -> list[int]:
        sel = self.selected
        if not isinstance(token, str):
            raise BadCommand("expected a sequence set")
        if token.isascii() and token.isdigit() and token[0] != "0" and len(token) <= 9:
            number = int(token)                 # one message: the common FETCH n
            if uid:
                i = sel.index_of_uid(number)
                return [] if i is None else [i]
            if number > len(sel):
                raise BadCommand("invalid message sequence number")
            return [number - 1]
        seqset = parse_set(token)
        if uid:
            return seqset.uid_indexes(sel.uids)
        if seqset.out_of_range(len(sel)) and not (token == "*" and not len(sel)):
            raise BadCommand("invalid message sequence number")
        out: list[int] = []
        for r in seqset.indexes(len(sel)):
            out.extend(range(r.start - 1, r.stop - 1))
        return out

    # -- untagged updates ----------------------------------------------------------------
    def sync_changes(self, allow_expunge: bool) -> defer.Deferred:
        """Tell the client what changed in the selected folder since it was last told
        (EXPUNGE only when ``allow_expunge``). One at a time per session."""
        if self._sync_lock is None:
            self._sync_lock = defer.DeferredLock()
        return self._sync_lock.run(self._sync_once, allow_expunge)

    def _sync_once(self, allow_expunge: bool):
        sel = self.selected
        if sel is None or not sel.dirty or self._lost:
            return defer.succeed(None)
        sel.dirty = False
        d = self.backend.changes(self.user, sel.name, sel.highest_modseq)
        d.addCallback(self._apply_changes, sel, allow_expunge)
        d.addErrback(self._sync_failed, sel)
        return d

    def _sync_failed(self, failure, sel):
        if failure.check(NoSuchFolder):
            return None                   # deleted: the next command says so
        log.failure("reading the changes of {user}/{folder} failed", failure,
                    user=self.user, folder=sel.name)
        sel.dirty = True
        return None

    def _apply_changes(self, changes, sel, allow_expunge: bool):
        if sel is not self.selected or self._lost:
            return None
        if changes.expunged_uids is None:      # the store forgot: compare snapshots
            d = self.backend.select(self.user, sel.name)
            return d.addCallback(self._diff_snapshot, sel, allow_expunge)
        gone = [i for i in map(sel.index_of_uid, changes.expunged_uids) if i is not None]
        if gone and not allow_expunge:
            sel.dirty = True                  # told after a command that may
            return None
        out = [self.expunged_lines(sel, gone)]
        last = sel.uids[-1] if len(sel) else 0
        added = 0
        condstore = "CONDSTORE" in self.enabled
        for mid, uid, size, date, modseq, flags in changes.updated:
            if isinstance(flags, str):
                flags = frozenset(flags.split())
            if uid > last:
                sel.append(mid, uid, size, date, modseq, flags)
                sel.recent.add(uid)
                last, added = uid, added + 1
                continue
            i = sel.index_of_uid(uid)
            if i is None:
                continue
            sel.modseqs[i] = modseq
            if sel.flags[i] != flags:
                sel.flags[i] = flags
                extra = b" MODSEQ (%d)" % modseq if condstore else b""
                out.append(b"* %d FETCH (UID %d FLAGS %s%s)\r\n"
                           % (i + 1, uid, format_flags(flags), extra))
        if added:
            out.append(b"* %d EXISTS\r\n* %d RECENT\r\n" % (len(sel), len(sel.recent)))
        sel.highest_modseq = max(sel.highest_modseq, changes.status.highest_modseq)
        sel.uid_next = max(sel.uid_next, changes.status.uid_next)
        self.write(b"".join(out))
        return None

    def _diff_snapshot(self, snapshot, sel, allow_expunge: bool):
        present = set(snapshot.uids)
        gone = [uid for uid in sel.uids if uid not in present]
        rows = [(snapshot.ids[i], snapshot.uids[i], snapshot.sizes[i], snapshot.dates[i],
                 snapshot.modseqs[i], snapshot.flags[i]) for i in range(len(snapshot))]
        changes = _Changes(snapshot.status, rows, gone)
        return self._apply_changes(changes, sel, allow_expunge)

    def expunged_lines(self, sel, indexes) -> bytes:
        """Remove the messages at ``indexes`` and say so: ``* n EXPUNGE`` lines, or
        one ``* VANISHED uid-set`` once QRESYNC is enabled (RFC 7162 §3.2.10)."""
        indexes = list(indexes)
        if "QRESYNC" in self.enabled:
            uids = [sel.uids[i] for i in indexes]
            sel.remove(indexes)
            return b"* VANISHED %s\r\n" % format_uid_set(uids).encode() if uids else b""
        return b"".join(b"* %d EXPUNGE\r\n" % n for n in sel.remove(indexes))

    # -- CHECK, CLOSE, UNSELECT, EXPUNGE -------------------------------------------------
    def do_CHECK(self, tag, args):
        self.selected.dirty = True
        return "CHECK completed"

    def do_UNSELECT(self, tag, args):
        self._close_mailbox()
        self.state = "authenticated"
        return "UNSELECT completed"

    def do_CLOSE(self, tag, args):
        sel = self.selected
        if sel.read_only:
            return self.do_UNSELECT(tag, args)
        doomed = [sel.ids[i] for i, f in enumerate(sel.flags) if "\\Deleted" in f]
        self._close_mailbox()
        self.state = "authenticated"
        if not doomed:
            return "CLOSE completed"
        d = self.backend.expunge_messages(self.user, sel.name, doomed)
        return d.addCallback(lambda _: "CLOSE completed")

    def do_EXPUNGE(self, tag, args):
        if args:
            raise BadCommand("EXPUNGE takes no arguments")
        return self._expunge(range(len(self.selected)))

    def uid_EXPUNGE(self, tag, args):
        if len(args) != 1:
            raise BadCommand("UID EXPUNGE takes a UID set")
        return self._expunge(self._indexes(args[0], uid=True))

    def _expunge(self, indexes):
        sel = self.selected
        if sel.read_only:
            raise CommandRefused("the mailbox is read-only", "READ-ONLY")
        doomed = [sel.ids[i] for i in indexes if "\\Deleted" in sel.flags[i]]
        if not doomed:
            return "EXPUNGE completed"
        d = self.backend.expunge_messages(self.user, sel.name, doomed)
        d.addCallback(self._expunged, sel)
        return d

    def _expunged(self, removed, sel):
        if sel is not self.selected:
            return "EXPUNGE completed"
        where = sel.index_by_id(removed)
        self.write(self.expunged_lines(sel, where.values()))
        if "QRESYNC" not in self.enabled:
            return "EXPUNGE completed"
        # RFC 7162 §3.2 (EXPUNGE): the tagged OK carries the HIGHESTMODSEQ after the expunge,
        # read (with what others changed meanwhile, told first) before it is sent.
        sel.dirty = True
        return (lambda: f"HIGHESTMODSEQ {sel.highest_modseq}", "EXPUNGE completed")

    # -- STORE ---------------------------------------------------------------------------
    def do_STORE(self, tag, args):
        return self._store(args, uid=False)

    def uid_STORE(self, tag, args):
        return self._store(args, uid=True)

    def _store(self, args, uid: bool):
        sel = self.selected
        if len(args) < 3:
            raise BadCommand("STORE takes a set, an item and flags")
        indexes = self._indexes(args[0], uid)
        rest = args[1:]
        unchanged_since = None
        if isinstance(rest[0], list):
            modifier = rest[0]
            if len(modifier) != 2 or str(modifier[0]).upper() != "UNCHANGEDSINCE" \
                    or not _is_number(modifier[1]):
                raise BadCommand("the STORE modifier is (UNCHANGEDSINCE modseq)")
            unchanged_since = int(modifier[1])
            self.enabled.add("CONDSTORE")
            rest = rest[1:]
        if len(rest) < 2 or not isinstance(rest[0], str):
            raise BadCommand("STORE takes FLAGS, +FLAGS or -FLAGS and flags")
        item = rest[0].upper()
        silent = item.endswith(".SILENT")
        mode = _STORE_MODES.get(item[:-7] if silent else item)
        if mode is None:
            raise BadCommand("STORE takes FLAGS, +FLAGS or -FLAGS")
        tokens = rest[1] if len(rest) == 2 and isinstance(rest[1], list) else rest[1:]
        flags = frozenset(astring_to_str(t) for t in tokens)
        if any(f.lower() == "\\recent" for f in flags):
            raise BadCommand("\\Recent cannot be stored")
        if sel.read_only:
            raise CommandRefused("the mailbox is read-only", "READ-ONLY")
        ids = [sel.ids[i] for i in indexes]
        if not ids:
            return "STORE completed"
        d = self.backend.store_flags(ids, flags, mode, unchanged_since)
        d.addErrback(_refuse_value_errors)
        d.addCallback(self._stored, sel, silent, uid, unchanged_since is not None)
        return d

    def _stored(self, result, sel, silent: bool, uid: bool, conditional: bool):
        if sel is not self.selected:
            return "STORE completed"
        where = sel.index_by_id(set(result.updated) | set(result.failed))
        condstore = "CONDSTORE" in self.enabled
        qresync = "QRESYNC" in self.enabled
        out = []
        for mid, (flags, modseq) in sorted(result.updated.items(),
                                           key=lambda kv: where.get(kv[0], -1)):
            i = where.get(mid)
            if i is None:
                continue
            changed = sel.flags[i] != flags
            # sel.highest_modseq moves only in _apply_changes: changes of others
            # below this modseq (an expunge not told yet) must still be read.
            sel.flags[i], sel.modseqs[i] = flags, modseq
            sel.dirty = True
            if silent and not (changed and conditional):
                continue
            items = []
            if uid or qresync:        # RFC 7162 §3.2: UID in every FETCH response
                items.append(b"UID %d" % sel.uids[i])
            if not silent:
                items.append(b"FLAGS " + format_flags(flags))
            if condstore:
                items.append(b"MODSEQ (%d)" % modseq)
            out.append(b"* %d FETCH (%s)\r\n" % (i + 1, b" ".join(items)))
        self.write(b"".join(out))
        if result.failed:
            numbers = [sel.uids[i] if uid else i + 1
                       for mid, i in where.items() if mid in result.failed]
            return (f"MODIFIED {format_uid_set(numbers)}", "conditional STORE failed")
        return "STORE completed"

    # -- COPY / MOVE ---------------------------------------------------------------------
    def do_COPY(self, tag, args):
        return self._copy(args, uid=False, move=False)

    def uid_COPY(self, tag, args):
        return self._copy(args, uid=True, move=False)

    def do_MOVE(self, tag, args):
        return self._copy(args, uid=False, move=True)

    def uid_MOVE(self, tag, args):
        return self._copy(args, uid=True, move=True)

    def _copy(self, args, uid: bool, move: bool):
        sel = self.selected
        if len(args) != 2:
            raise BadCommand("COPY/MOVE take a set and a mailbox name")
        indexes = self._indexes(args[0], uid)
        dest = self.mailbox_name(args[1])
        if move and sel.read_only:
            raise CommandRefused("the mailbox is read-only", "READ-ONLY")
        ids = [sel.ids[i] for i in indexes]
        verb = "MOVE" if move else "COPY"
        if not ids:
            return f"{verb} completed (no messages)"
        if move:
            d = self.backend.move_messages(self.user, sel.name, ids, dest)
        else:
            d = self.backend.copy_messages(self.user, ids, dest)
        d.addErrback(_refuse_store_errors_trycreate)
        d.addCallback(self._copied, sel, move, verb, dest)
        return d

    def _copied(self, result, sel, move: bool, verb: str, dest: str):
        validity, pairs = result
        if not pairs:
            return f"{verb} completed (no messages)"
        where = sel.index_by_id(mid for mid, _ in pairs) if sel is self.selected else {}
        source = format_uid_set(sel.uids[where[mid]] for mid, _ in pairs if mid in where)
        target = format_uid_set(new for _, new in pairs)
        code = f"COPYUID {validity} {source} {target}"
        if dest == sel.name and sel is self.selected:
            sel.dirty = True
        if not move:
            return (code, "COPY completed")
        self.untagged(f"OK [{code}] moved")
        if sel is self.selected:
            self.write(self.expunged_lines(sel, where.values()))
        return "MOVE completed"

    # -- SEARCH --------------------------------------------------------------------------
    def do_SEARCH(self, tag, args):
        return self._search(args, uid=False)

    def uid_SEARCH(self, tag, args):
        return self._search(args, uid=True)

    def _search(self, args, uid: bool):
        from .search import parse_search

        if not args:
            raise BadCommand("SEARCH needs search keys")
        program = parse_search(args, limits=self.mime_limits)
        if program.uses_modseq:
            self.enabled.add("CONDSTORE")
        return self._run_search(program, uid)

    @defer.inlineCallbacks
    def _run_search(self, program, uid: bool):
        sel = self.selected
        hits: list[int] = []
        total = len(sel)
        uids = sel.uids[:] if uid else None
        if program.flags_only:
            hits, numbers = yield self.run(_flag_search, program, list(sel.flags), uids)
            self.write(b"* SEARCH%s\r\n" % numbers)
            return "SEARCH completed"
        if program.needs == "meta":
            for start in range(0, total, META_BATCH * 10):
                chunk = range(start, min(total, start + META_BATCH * 10))
                records = [_Record(sel, i) for i in chunk]
                found = yield self.run(_matching, program, records)
                hits += found
        else:
            for batch in self._body_batches(range(total)):
                records = yield self._load_records(sel, batch, program.needs)
                found = yield self.run(_matching, program, records)
                hits += found
                if self._lost or sel is not self.selected:
                    return None
        line = b"* SEARCH" + (yield self.run(_search_numbers, hits, uids))
        if program.uses_modseq and hits:
            line += b" (MODSEQ %d)" % max(sel.modseqs[i] for i in hits)
        self.write(line + b"\r\n")
        return "SEARCH completed"

    def _body_batches(self, indexes, streamed=()):
        """Lists of indexes to read and render together (at most BODY_BATCH_OCTETS of
        messages); an index in ``streamed`` comes alone, as an int, in its place."""
        sel = self.selected
        batch: list[int] = []
        octets = 0
        if streamed:
            indexes = sorted({*indexes, *streamed})
        for i in indexes:
            if i in streamed:
                if batch:
                    yield batch
                    batch, octets = [], 0
                yield i
                continue
            if batch and (octets + sel.sizes[i] > BODY_BATCH_OCTETS or len(batch) >= 64):
                yield batch
                batch, octets = [], 0
            batch.append(i)
            octets += sel.sizes[i]
        if batch:
            yield batch

    @defer.inlineCallbacks
    def _load_records(self, sel, indexes, needs: str):
        """[_Record] of the messages at ``indexes`` that still exist, with their
        headers or their whole octets, all of them in one store read."""
        ids = [sel.ids[i] for i in indexes]
        if needs != "headers":
            found = yield self.backend.read_messages(ids)
            return [_Record(sel, i, full=found[mid])
                    for i, mid in zip(indexes, ids) if mid in found]
        found = yield self.backend.read_headers_of(ids, HEADER_LIMIT)
        return [_Record(sel, i, found[mid]) for i, mid in zip(indexes, ids) if mid in found]

    # -- FETCH ---------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _stream_message(self, sel, i: int, whole, rest):
        """One FETCH response whose whole-message items (BODY[], RFC822) are written
        from the blob chunk by chunk, as the transport drains; the other items (which
        need no body) are rendered first."""
        content = yield self.backend.open_message(sel.ids[i])
        if content is None or self._lost:
            return None
        head = b"("
        if rest.items:
            rendered = yield self.run(_render_meta, rest, _meta(sel, i))
            head = rendered[:-1] + b" "
        self.write(b"* %d FETCH %s" % (i + 1, head))
        size = content.size
        for n, item in enumerate(whole):
            self.write((b" " if n else b"") + item.label() + b" {%d}\r\n" % size)
            chunks = content.chunks(CHUNK)
            sent = 0
            try:
                for chunk in chunks:
                    chunk = chunk[:size - sent]
                    self.write(chunk)
                    sent += len(chunk)
                    if self._flow.blocked:
                        yield self.wait_for_drain()
                    if self._lost:
                        return None
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if sent < size:        # the blob is shorter than its recorded size
                log.error("message {id} is shorter than its size; padded", id=sel.ids[i])
                self.write(b" " * (size - sent))
        self.write(b")\r\n")
        return None

    def do_FETCH(self, tag, args):
        return self._fetch(args, uid=False)

    def uid_FETCH(self, tag, args):
        return self._fetch(args, uid=True)

    def _fetch(self, args, uid: bool):
        if len(args) not in (2, 3):
            raise BadCommand("FETCH takes a set, data items and optional modifiers")
        indexes = self._indexes(args[0], uid)
        request = _parsed_items(args[1], uid)
        sel = self.selected
        vanished_since = None
        if len(args) == 3:
            from .qresync import parse_fetch_modifiers

            since, vanished = parse_fetch_modifiers(args[2], uid, "QRESYNC" in self.enabled)
            if vanished:
                vanished_since = since
            self.enabled.add("CONDSTORE")
            indexes = [i for i in indexes if sel.modseqs[i] > since]
            request = request.with_item("MODSEQ")
        if request.wants_modseq:
            self.enabled.add("CONDSTORE")
        if uid:
            request = request.with_item("UID")
        if vanished_since is not None:
            d = self._send_vanished(sel, parse_set(args[0]), vanished_since)
            return d.addCallback(lambda _: self._run_fetch(sel, indexes, request))
        answered = self._fetch_read_ahead(sel, indexes, request)
        if answered is not None:
            return answered
        return self._run_fetch(sel, indexes, request)

    def _send_vanished(self, sel, uid_set, since: int) -> defer.Deferred:
        """RFC 7162 §3.2.6: ``* VANISHED (EARLIER)`` of the UIDs in ``uid_set``
        expunged since ``since`` (those not present when the store forgot)."""
        from .qresync import format_spans, vanished_spans

        d = self.backend.changes(self.user, sel.name, since)

        def tell(changes):
            spans = vanished_spans(changes.expunged_uids, sel.uids, sel.uid_next, uid_set)
            if spans and sel is self.selected:
                self.write(b"* VANISHED (EARLIER) %s\r\n" % format_spans(spans))
        return d.addCallback(tell)

    def _fetch_read_ahead(self, sel, indexes, request):
        """The answer to a FETCH of whole messages (and items that need no octets)
        given on the spot from what was read ahead, with no store read and no
        Deferred; None when some message is not there or the FETCH sets \\Seen on
        a message without it (the store must change it first)."""
        ahead = self._read_ahead
        if ahead is None or not len(ahead) or sel.dirty or not indexes:
            return None
        whole, rest = _split_whole_message_items(request)
        if not whole or rest.needs != "meta":
            return None
        flags = sel.flags
        if request.sets_seen and not sel.read_only and \
                any("\\Seen" not in flags[i] for i in indexes):
            return None
        ids = [sel.ids[i] for i in indexes]
        octets = ahead.take(ids, self.backend.changes_committed)
        if octets is None:
            return None
        ahead.served(sel, indexes)
        if rest.items:
            jobs = [(i, _meta(sel, i), _Source(None, data))
                    for i, data in zip(indexes, octets)]
            self.write(_render_batch(request, jobs, self.mime_limits)[0])
        else:                                   # BODY.PEEK[] alone: no MessageMeta
            self.write(b"".join([_whole_response(i, whole, data)
                                 for i, data in zip(indexes, octets)]))
        return "FETCH completed"

    @defer.inlineCallbacks
    def _load_whole(self, sel, indexes):
        """[_Record] of whole messages at ``indexes`` for a FETCH of a few of them:
        from the read-ahead when it has them all, else from the store together with
        the messages after them that the read-ahead plans (see read_ahead.py)."""
        if self._read_ahead is None:
            self._read_ahead = ReadAhead(self.callLater)
        ahead = self._read_ahead
        ids = [sel.ids[i] for i in indexes]
        mark = self.backend.changes_committed
        octets = None if sel.dirty else ahead.take(ids, mark)
        if octets is not None:
            ahead.served(sel, indexes)
            return [_Record(sel, i, full=data) for i, data in zip(indexes, octets)]
        ahead.forget(ids)
        more = [] if sel.dirty else [sel.ids[i] for i in ahead.plan(sel, indexes)]
        found = yield self.backend.read_messages(ids + more)
        if sel is self.selected and not sel.dirty:
            ahead.keep(found, more, mark)
        return [_Record(sel, i, full=found[mid])
                for i, mid in zip(indexes, ids) if mid in found]

    @defer.inlineCallbacks
    def _run_fetch(self, sel, indexes, request):
        if request.sets_seen and not sel.read_only:
            unseen = [sel.ids[i] for i in indexes if "\\Seen" not in sel.flags[i]]
            if unseen:
                result = yield self.backend.store_flags(unseen, frozenset({"\\Seen"}),
                                                        "add")
                where = sel.index_by_id(result.updated)
                for mid, (flags, modseq) in result.updated.items():
                    i = where.get(mid)
                    if i is not None:
                        sel.flags[i], sel.modseqs[i] = flags, modseq
                sel.dirty = True
                # RFC 3501 §6.4.5: the changed \Seen flag is told in the response,
                # with UID and MODSEQ after ENABLE QRESYNC (RFC 7162 §3.2).
                request = request.with_item("FLAGS")
                if "QRESYNC" in self.enabled:
                    request = request.with_item("UID").with_item("MODSEQ")
        whole, rest = _split_whole_message_items(request)
        streamed = set()
        if whole and rest.needs == "meta":
            streamed = {i for i in indexes if self.selected.sizes[i] > STREAM_OVER}
        if request.needs == "meta":
            yield self._fetch_meta(sel, indexes, request)
            return "FETCH completed"
        few_whole = bool(whole) and rest.needs == "meta" and not streamed and \
            len(indexes) <= FEW_WHOLE
        batches = self._body_batches([i for i in indexes if i not in streamed], streamed)
        refusals = 0
        for batch in batches:
            if isinstance(batch, int):
                yield self._stream_message(sel, batch, whole, rest)
                continue
            if self._lost or sel is not self.selected:
                return None
            if few_whole:
                records = yield self._load_whole(sel, batch)
            else:
                records = yield self._load_records(sel, batch, request.needs)
            items = [(r.seq - 1, r) for r in records]
            jobs = [(i, _meta(sel, i), source) for i, source in items]
            if rest.needs == "meta" and sum(sel.sizes[i] for i in batch) <= INLINE_OCTETS:
                # whole messages and metadata only: no parse, a copy of a few octets
                data, refused = _render_batch(request, jobs, self.mime_limits)
            else:
                data, refused = yield self.run(_render_batch, request, jobs,
                                               self.mime_limits)
            self.write(data)
            refusals += refused
            yield self.wait_for_drain()
        if refusals:
            # RFC 3516 §4.3: the others are answered; the command fails for these.
            raise CommandRefused(f"{refusals} message(s) have a part in a "
                                  "Content-Transfer-Encoding that cannot be decoded",
                                  "UNKNOWN-CTE")
        return "FETCH completed"


    @defer.inlineCallbacks
    def _fetch_meta(self, sel, indexes, request):
        """FETCH of items that need no message octets (UID, FLAGS, INTERNALDATE,
        RFC822.SIZE, MODSEQ): META_ROWS messages per worker call, their columns
        copied out of the arrays here (a slice for a run of sequence numbers). The
        next chunk is rendered while the transport sends the last one, and written
        once the transport has room (at most one rendered chunk waits)."""
        from .fetch import render_meta_rows

        ends = [min(len(indexes), META_FIRST_ROWS)]
        while ends[-1] < len(indexes):
            ends.append(min(len(indexes), ends[-1] + META_ROWS))
        starts = [0, *ends[:-1]]

        def render(k: int) -> defer.Deferred:
            chunk = indexes[starts[k]:ends[k]]
            first, last = chunk[0], chunk[-1]
            if last - first + 1 == len(chunk):
                cut = slice(first, last + 1)
                columns = (range(first + 1, last + 2), sel.uids[cut], sel.flags[cut],
                           sel.dates[cut], sel.sizes[cut], sel.modseqs[cut])
            else:
                pick = itemgetter(*chunk)           # two or more: a tuple
                columns = ([i + 1 for i in chunk], pick(sel.uids), pick(sel.flags),
                           pick(sel.dates), pick(sel.sizes), pick(sel.modseqs))
            return self.run(render_meta_rows, request, *columns)

        pending = render(0) if indexes else None
        for k in range(len(starts) if indexes else 0):
            data = yield pending
            if self._lost or sel is not self.selected:
                return None
            pending = render(k + 1) if k + 1 < len(starts) else None
            self.write(data)
            yield self.wait_for_drain()
        return None


_PARSED: dict = {}          # (items token, UID FETCH) → FetchRequest, for common forms
_PARSED_MAX = 256
_SPLIT: dict = {}           # FetchRequest → _split_whole_message_items of it


def _parsed_items(token, uid: bool):
    """``parse_fetch_items`` of ``token``, with ``UID`` added for UID FETCH; the
    requests of atoms and lists of atoms are kept (a few hundred distinct forms at
    most: clients send the same few FETCH forms again and again)."""
    from .fetch import parse_fetch_items

    if isinstance(token, str):
        key = (token, uid)
    elif isinstance(token, list) and all(isinstance(t, str) for t in token):
        key = (tuple(token), uid)
    else:
        request = parse_fetch_items(token)
        return request.with_item("UID") if uid else request
    request = _PARSED.get(key)
    if request is None:
        request = parse_fetch_items(token)
        if uid:
            request = request.with_item("UID")
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = request
    return request


def _split_whole_message_items(request):
    """(the items that send a whole message — BODY[], BODY.PEEK[], RFC822 — and a
    request of the others)."""
    split = _SPLIT.get(request)
    if split is not None:
        return split
    from .fetch import FetchRequest

    whole = tuple(item for item in request.items
                  if item.name == "RFC822" or (item.name == "BODY" and item.section
                                               and not item.part and not item.text
                                               and item.partial is None))
    rest = tuple(item for item in request.items if item not in whole)
    split = whole, FetchRequest(items=rest)
    if len(_SPLIT) >= _PARSED_MAX:
        _SPLIT.clear()
    _SPLIT[request] = split
    return split


def _whole_response(i: int, whole, data: bytes) -> bytes:
    """``* n FETCH (BODY[] {size}…)`` of a request of whole-message items only: the
    octets :func:`fetch.render` gives for it, without a parse or a MessageMeta."""
    from .fetch import text_literal

    literal = text_literal(data)
    return b"* %d FETCH (%s)\r\n" % (i + 1, b" ".join([item.label() + b" " + literal
                                                        for item in whole]))


def _render_meta(request, meta) -> bytes:
    from .fetch import render

    return render(request, meta, None)


def _meta(sel, i: int):
    from .fetch import MessageMeta

    return MessageMeta(uid=sel.uids[i], flags=sel.flags[i], internal_date=sel.dates[i],
                       size=sel.sizes[i], modseq=sel.modseqs[i])


def _render_batch(request, jobs, limits) -> tuple[bytes, int]:
    """The untagged FETCH responses of one batch (runs off the reactor), and how many
    messages were left out because BINARY cannot undo a part's encoding
    (``UNKNOWN-CTE``): one such message does not cost the others their answer."""
    from .fetch import render

    out, refused = [], 0
    for i, meta, source in jobs:
        try:
            out.append(b"* %d FETCH %s\r\n" % (i + 1, render(request, meta, source, limits)))
        except CommandRefused as exc:
            if exc.code != "UNKNOWN-CTE":
                raise
            refused += 1
    return b"".join(out), refused


def _is_number(token) -> bool:
    return isinstance(token, str) and token.isascii() and token.isdigit() and len(token) < 20


def _search_numbers(hits: list[int], uids) -> bytes:
    """`` n n n`` of the SEARCH response: the sequence numbers of the indexes ``hits``,
    or their UIDs from ``uids`` (a copy of the folder's) for UID SEARCH."""
    if not hits:
        return b""
    numbers = map(uids.__getitem__, hits) if uids is not None else map((1).__add__, hits)
    return b" " + " ".join(map(str, numbers)).encode("ascii")


def _flag_search(program, flags, uids) -> tuple[list[int], bytes]:
    hits = program.matching_flags(flags)
    return hits, _search_numbers(hits, uids)


def _matching(program, records) -> list[int]:
    return [r.seq - 1 for r in records if program.matches(r)]


def _refuse_value_errors(failure):
    if failure.check(ValueError):
        raise BadCommand(str(failure.value) or "invalid flag")
    return failure


def _refuse_store_errors_trycreate(failure):
    refusal = store_refusal(failure.value, "TRYCREATE")
    if refusal is None:
        return failure
    raise refusal
