"""``HasAttachment``: the message carries an attachment."""

from __future__ import annotations

from .whole_mail import WholeMailMatcher


def is_attachment(part) -> bool:
    """A part is an attachment when its Content-Disposition says so or it has a filename."""
    disposition = (part.get_content_disposition() or "").lower()
    return disposition == "attachment" or bool(part.get_filename())


class HasAttachment(WholeMailMatcher):
    """Matches all recipients when any MIME part of the message is an attachment
    (``Content-Disposition: attachment``, or a part with a file name). No condition."""

    takes_condition = False

    def matches(self, mail):
        headers = mail.headers()
        if headers.get_content_maintype() != "multipart":
            return is_attachment(headers)
        return any(not part.is_multipart() and is_attachment(part)
                   for part in mail.message.walk())
