"""``HasMimeType``: the message's own content type is one of a list."""

from __future__ import annotations

from mailet_mta.api import Mail

from .whole_mail import WholeMailMatcher


class HasMimeType(WholeMailMatcher):
    """Matches all recipients when the message's top-level ``Content-Type`` (without
    its parameters, compared without regard to case) is one of the condition's list:
    ``HasMimeType=text/plain,text/html`` (James's semantics: the parts inside a
    multipart are not looked at). Only the header block is parsed, however large the
    message. A message without Content-Type is ``text/plain`` (RFC 2045 §5.2).
    """

    condition_required = True

    def init_matcher(self) -> None:
        self.types = {t.lower() for t in self.condition_list()}
        for mime_type in self.types:
            main, sep, sub = mime_type.partition("/")
            if not sep or not main or not sub or " " in mime_type:
                self.fail(f"{mime_type!r} is not a MIME type like text/plain")

    def matches(self, mail: Mail) -> bool:
        return mail.headers().get_content_type().lower() in self.types
