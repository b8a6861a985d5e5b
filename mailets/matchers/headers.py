"""Header tests: HasHeader, SubjectStartsWith, SubjectIs. All or none of the recipients.

Only the header block is parsed, however large the message. Encoded words
(``=?utf-8?q?…?=``) are decoded before comparing.
"""

from __future__ import annotations

from email.message import EmailMessage

from mailet_mta.api import Mail

from .whole_mail import WholeMailMatcher


class _HeaderMatcher(WholeMailMatcher):
    def matches(self, mail: Mail) -> bool:
        return self.matches_headers(mail.headers())

    def matches_headers(self, headers: EmailMessage) -> bool:
        raise NotImplementedError


def _text(value: object) -> str:
    return " ".join(str(value).split()) if value is not None else ""


class HasHeader(_HeaderMatcher):
    """Matches when every listed header is present (and, when given, has the value):
    ``HasHeader=X-Spam-Flag``, ``HasHeader=X-Spam-Flag=YES+X-Mailer``.

    Conditions are joined with ``+`` (all must hold); ``name=value`` compares the first
    such header's value with the given one, trimmed and without regard to case.
    """

    condition_required = True

    def init_matcher(self) -> None:
        self.tests = []
        for item in (self.condition or "").split("+"):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not name or any(c.isspace() or c == ":" for c in name):
                self.fail(f"{item.strip()!r} is not a header name[=value]; "
                           f"write HasHeader=Name or HasHeader=Name=value+Other")
            self.tests.append((name, value.strip().lower() if sep else None))

    def matches_headers(self, headers: EmailMessage) -> bool:
        for name, value in self.tests:
            found = headers.get_all(name)
            if not found:
                return False
            if value is not None and _text(found[0]).lower() != value:
                return False
        return True


class SubjectStartsWith(_HeaderMatcher):
    """Matches when the Subject starts with the text: ``SubjectStartsWith=[SPAM]``
    (case-sensitive)."""

    condition_required = True

    def init_matcher(self) -> None:
        self.prefix = self.condition or ""

    def matches_headers(self, headers: EmailMessage) -> bool:
        return _text(headers.get("Subject")).startswith(self.prefix)


class SubjectIs(_HeaderMatcher):
    """Matches when the Subject is exactly the text: ``SubjectIs=Daily report``
    (case-sensitive; runs of white space count as one space)."""

    condition_required = True

    def init_matcher(self) -> None:
        self.subject = _text(self.condition)

    def matches_headers(self, headers: EmailMessage) -> bool:
        subject = headers.get("Subject")
        return subject is not None and _text(subject) == self.subject
