"""``HasAttachment``: the message carries an attachment."""

from __future__ import annotations

from email.message import Message
from typing import Any

from mailet_mta.api import Mail

from .whole_mail import WholeMailMatcher


def is_attachment(part: Message) -> bool:
    """A part is an attachment when its Content-Disposition says so or it has a filename."""
    disposition = (part.get_content_disposition() or "").lower()
    return disposition == "attachment" or bool(part.get_filename())


def has_attached_part(mail: Mail) -> bool:
    """True when a leaf part of the parsed message is an attachment (a parse: run it on
    a mailet worker thread; raises MimeLimitError past the MIME limits)."""
    return any(not part.is_multipart() and is_attachment(part)
               for part in mail.message.walk())


class HasAttachment(WholeMailMatcher):
    """Matches all recipients when any MIME part of the message is an attachment
    (``Content-Disposition: attachment``, or a part with a file name). No condition.

    A single-part message is judged from its header; a multipart one is parsed on a
    mailet worker thread, within the MIME limits (past them the matcher fails with
    MimeLimitError, and ``onMatchException`` decides)."""

    takes_condition = False

    def match(self, mail: Mail) -> Any:
        headers = mail.headers()
        if headers.get_content_maintype() != "multipart":
            return list(mail.recipients) if is_attachment(headers) else []
        found = self.context.run_in_worker(has_attached_part, mail)
        return found.addCallback(lambda yes: list(mail.recipients) if yes else [])
