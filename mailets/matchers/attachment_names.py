"""``AttachmentFileNameIs``: an attachment's file name matches one of a list of masks."""

from __future__ import annotations

import io
import re
import zipfile
from email.message import Message

from mailet_mta.api import Mail

from ..mime_parts import TooComplex, leaf_parts
from .whole_mail import WholeMailMatcher

MAX_ZIP_ENTRIES = 1000      # names read from one attached .zip
MAX_ZIP_SIZE = 16 * 1024 * 1024   # larger .zip attachments match unopened


class AttachmentFileNameIs(WholeMailMatcher):
    """Matches all recipients when a part's file name matches a mask:
    ``AttachmentFileNameIs=[-d] [-z] *.exe, *.scr, report.pdf``.

    Masks are separated by commas or spaces and compared without regard to case; a
    mask starting with ``*`` matches any name ending with the rest, any other mask the
    whole name. ``-z`` also checks the names inside attached ``.zip`` files (one level,
    not recursively); ``-d`` logs what was found. The walk is bounded (see
    :mod:`mailets.mime_parts`): a message too complex to examine whole matches, and
    so does a ``.zip`` that cannot be read or holds too many entries when ``-z`` is set.
    """

    condition_required = True

    def init_matcher(self) -> None:
        words = [w for w in re.split(r"[\s,]+", self.condition or "") if w]
        self.debug = "-d" in words
        self.unzip = "-z" in words
        masks = [w.lower() for w in words if w not in ("-d", "-z")]
        if not masks:
            self.fail("needs at least one file name mask, e.g. *.exe")
        self.suffixes = tuple(m[1:] for m in masks if m.startswith("*"))
        self.names = {m for m in masks if not m.startswith("*")}

    def matches(self, mail: Mail) -> bool:
        try:
            for part in leaf_parts(mail.message):
                name = part.get_filename()
                if name and self._matches_name(name, mail):
                    return True
                if self.unzip and name and name.lower().endswith(".zip") \
                        and self._zip_matches(part, mail):
                    return True
        except TooComplex as exc:
            self.log.warn("AttachmentFileNameIs: mail {mail_name}: {why}; matching it "
                          "unexamined", mail_name=mail.name, why=str(exc))
            return True
        return False

    def _matches_name(self, name: str, mail: Mail) -> bool:
        lower = str(name).strip().lower()
        found = lower in self.names or (bool(self.suffixes) and lower.endswith(self.suffixes))
        if found and self.debug:
            self.log.info("AttachmentFileNameIs: mail {mail_name}: attachment {name} "
                          "matches", mail_name=mail.name, name=name)
        return found

    def _zip_matches(self, part: Message, mail: Mail) -> bool:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if len(data) > MAX_ZIP_SIZE:
            return True
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                entries = archive.infolist()
                if len(entries) > MAX_ZIP_ENTRIES:
                    return True
                return any(self._matches_name(e.filename.rsplit("/", 1)[-1], mail)
                           for e in entries if not e.is_dir())
        except (zipfile.BadZipFile, ValueError, OSError):
            return True   # an attachment named .zip that is no zip hides its content
