"""DATA and BDAT: streaming the body into a blob and the durable hand-off.

The body goes chunk by chunk into ``backend.new_blob_writer()``, behind a
``Received:`` header. When the data is complete the writer is finished (fsynced in a
thread when it spilled to a file), the Mail is built and ``backend.accept`` is called;
only when its Deferred fires does the client get ``250``. Any failure answers ``451
4.3.0`` and aborts the writer. A connection lost before the end aborts the writer: no
mail, no blob file.

BDAT chunks are length-framed (RFC 3030), so no sequence in them can end the
message early; but the server offers CHUNKING without BINARYMIME, so their content is
text with CRLF line ends like DATA's, and a bare CR or LF would reach the next hop's
DATA just the same. DATA's rule applies to them: a chunk holding a bare CR or LF is
refused with ``550 5.6.11``.

The header block (up to the first empty line) of either is bounded by
``maxHeaderSize``: a longer one is refused with ``552 5.3.4`` once the data is read,
and the session goes on. So no mail with an endless header block reaches the spool.
"""

from __future__ import annotations

import errno
import re

from twisted.internet import defer
from twisted.logger import Logger

from ..logging_setup import log_queued
from ..mail import MessageSource
from .backend import MailRefused
from .data_reader import CountedChunkReader, DotDataReader, HeaderBlockGuard, LineEndCheck
from .envelope import build_mail, received_header

log = Logger()

_STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT)
_BDAT_RE = re.compile(r"(\d{1,18})(?:[ \t]+(LAST))?\Z", re.IGNORECASE)


class TransferMixin:
    """DATA, BDAT and the commit path for the SMTP protocol."""

    # -- DATA ----------------------------------------------------------------------
    def do_DATA(self, arg):
        if arg:
            return self.reply(501, "5.5.4", "Syntax: DATA")
        refusal = self._body_refusal()
        if refusal is not None:
            return self.reply(*refusal)
        if self.envelope.bdat_used:
            return self.reply(503, "5.5.1", "Error: DATA after BDAT")
        self._start_writer()
        self._reader = DotDataReader(self._body_guard.feed, self.config.max_message_size)
        self.reply(354, None, "End data with <CR><LF>.<CR><LF>")

    def _body_refusal(self):
        if self.envelope is None:
            return (503, "5.5.1", "Error: need MAIL command")
        if not self.envelope.recipients:
            return (554, "5.5.1", "Error: no valid recipients")
        return None

    def _start_writer(self) -> None:
        self._writer = self.backend.new_blob_writer()
        self._writer.write(received_header(self.session, self.envelope, self.server_name))
        self._body_guard = HeaderBlockGuard(self._writer.write, self.config.max_header_size)
        self._line_ends = LineEndCheck()

    def body_received(self):
        """The body reader saw the end of its data; returns None or a Deferred."""
        reader, self._reader = self._reader, None
        if isinstance(reader, DotDataReader):
            if reader.bare_line_end:
                return self._fail_body(550, "5.6.11", "Message contains bare CR or LF; "
                                       "use CRLF line ends")
            if reader.too_big:
                return self._fail_body(552, "5.3.4", "Message size exceeds fixed maximum "
                                       "message size")
            if self._body_guard.too_big:
                return self._fail_body(*self._header_refusal())
            return self._commit()
        return self._bdat_chunk_done()

    def _header_refusal(self):
        return (552, "5.3.4", f"Message header block exceeds the maximum of "
                f"{self.config.max_header_size} octets (maxHeaderSize)")

    def _bdat_write(self, piece: bytes) -> None:
        self._line_ends.feed(piece)
        self._body_guard.feed(piece)

    def _fail_body(self, code, enhanced, text):
        self.reset_transaction()
        self.reply(code, enhanced, text)

    # -- BDAT (RFC 3030) -----------------------------------------------------------
    def do_BDAT(self, arg):
        m = _BDAT_RE.match(arg)
        if m is None:
            # Without a valid count the chunk cannot be skipped: the only safe answer is
            # to end the session rather than read body bytes as commands.
            return self.close_with(501, "5.5.4", "Syntax: BDAT <size> [LAST]; closing")
        size, last = int(m.group(1)), m.group(2) is not None
        refusal = self._body_refusal()
        env = self.envelope
        if refusal is None and env.bdat_failed is not None:
            refusal = env.bdat_failed
        sink = None
        if refusal is None:
            if not env.bdat_used:
                env.bdat_used = True
                self._bdat_size = 0
                self._start_writer()
            self._bdat_size += size
            limit = self.config.max_message_size
            if limit and self._bdat_size > limit:
                env.bdat_failed = (552, "5.3.4", "Message size exceeds fixed maximum "
                                   "message size")
                self._abort_body()
            else:
                sink = self._bdat_write
        self._bdat = (size, last, refusal)
        self._reader = CountedChunkReader(size, sink)
        if size == 0:
            self._reader = None
            return self._bdat_chunk_done()
        return None

    def _bdat_chunk_done(self):
        size, last, refusal = self._bdat
        env = self.envelope
        if refusal is None and env is not None:
            self._check_chunk(env, last)
            refusal = env.bdat_failed
        if refusal is not None:
            self.reset_transaction()
            return self.reply(*refusal)
        if last:
            return self._commit()
        self.reply(250, "2.0.0", f"{size} octets received")

    def _check_chunk(self, env, last: bool) -> None:
        """DATA's rules on the bytes of the BDAT chunks so far (bare CR/LF, header)."""
        if env.bdat_failed is not None or self._writer is None:
            return
        if last:
            self._line_ends.end()
        if self._line_ends.bad:
            env.bdat_failed = (550, "5.6.11", "Message contains bare CR or LF; use CRLF "
                               "line ends")
        elif self._body_guard.too_big:
            env.bdat_failed = self._header_refusal()

    # -- commit --------------------------------------------------------------------
    def _commit(self) -> defer.Deferred:
        env, writer = self.envelope, self._writer
        self.envelope, self._writer = None, None
        session = self.session
        d = writer.finish()

        ref_size = [0]

        def finished(ref):
            ref_size[0] = ref.size
            mail = build_mail(session, env, self._message_source(ref, writer))
            return self.backend.accept(mail, ref)

        def accepted(_):
            log_queued(self.config.name, session, env, ref_size[0])
            self.reply(250, "2.0.0", f"Ok: queued as {env.name}")

        def failed(failure):
            writer.abort()
            _remove_finished_file(writer, env.name)
            if failure.check(MailRefused):
                log.info("mail {name} refused: {reason}", name=env.name,
                         reason=str(failure.value))
                return self.reply(*failure.value.reply)
            if getattr(failure.value, "errno", None) in _STORAGE_FULL:  # RFC 3463 §3.4
                return self.reply(452, "4.3.1", "Error: insufficient system storage, "
                                                "try again later")
            log.failure("could not spool mail {name}", failure, name=env.name)
            self.reply(451, "4.3.0", "Error: could not queue the message, try again later")

        d.addCallback(finished)
        d.addCallbacks(accepted, failed)
        return d

    def _message_source(self, ref, writer) -> MessageSource:
        if ref.data is not None:
            return MessageSource(ref.data, blob_id=ref.id)
        custom = getattr(self.backend, "message_source", None)
        if custom is not None:
            return custom(ref)
        path = _blob_path(writer)
        return MessageSource(size=ref.size, loader=path.read_bytes,
                             opener=lambda: open(path, "rb"), blob_id=ref.id,
                             head=getattr(ref, "head", None))

    def _abort_body(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def _blob_path(writer):
    """Where the writer's store keeps the finished file of ``writer``."""
    return writer._store.path_for(writer.id)  # BlobWriter has no public path yet


def _remove_finished_file(writer, name) -> None:
    """A mail the spool refused must not leave its fsynced body file behind."""
    try:
        _blob_path(writer).unlink(missing_ok=True)
    except (AttributeError, OSError) as exc:
        log.warn("could not remove the body file of refused mail {name}: {exc}",
                 name=name, exc=exc)
