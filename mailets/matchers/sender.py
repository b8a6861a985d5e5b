"""Matchers on the envelope sender (MAIL FROM). They match all recipients or none.

SenderIs, SenderIsRegex, SenderIsNull, SenderIsLocal, SenderHostIs.
"""

from __future__ import annotations

from mailet_mta.api import Mail, MailAddress

from ..address_lists import parse_addresses, parse_domains
from .recipient_lists import compile_condition
from .whole_mail import WholeMailMatcher


class SenderMatcher(WholeMailMatcher):
    """Base: ``match_sender(sender)`` decides for the whole mail; a null sender
    (``<>``) is passed as None."""

    def matches(self, mail: Mail) -> bool:
        return self.match_sender(mail.sender)

    def match_sender(self, sender: MailAddress | None) -> bool:
        raise NotImplementedError


class SenderIs(SenderMatcher):
    """Matches when the sender is in the list: ``SenderIs=a@example.com,b@example.com``."""

    condition_required = True

    def init_matcher(self) -> None:
        try:
            self.senders = set(parse_addresses(self.condition_list(), "SenderIs"))
        except ValueError as exc:
            self.fail(str(exc))

    def match_sender(self, sender: MailAddress | None) -> bool:
        return sender is not None and sender in self.senders


class SenderIsRegex(SenderMatcher):
    """Matches when the whole sender address matches the regular expression:
    ``SenderIsRegex=.*@example\\.com``. The null sender never matches."""

    condition_required = True

    def init_matcher(self) -> None:
        self.pattern = compile_condition(self)

    def match_sender(self, sender: MailAddress | None) -> bool:
        return sender is not None and self.pattern.fullmatch(str(sender)) is not None


class SenderIsNull(SenderMatcher):
    """Matches mails with the null sender ``<>`` (bounces, notifications). No condition."""

    takes_condition = False

    def match_sender(self, sender: MailAddress | None) -> bool:
        return sender is None


class SenderIsLocal(SenderMatcher):
    """Matches when the sender is a mailbox of this server (``context.is_local_email``).
    No condition."""

    takes_condition = False

    def match_sender(self, sender: MailAddress | None) -> bool:
        return sender is not None and bool(self.context.is_local_email(sender))


class SenderHostIs(SenderMatcher):
    """Matches when the sender's domain is in the list: ``SenderHostIs=example.com,example.org``."""

    condition_required = True

    def init_matcher(self) -> None:
        try:
            self.domains = parse_domains(self.condition_list(), "SenderHostIs")
        except ValueError as exc:
            self.fail(str(exc))

    def match_sender(self, sender: MailAddress | None) -> bool:
        return sender is not None and sender.domain in self.domains
