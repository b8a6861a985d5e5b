"""Recipient counts: IsSingleRecipient, TooManyRecipients."""

from __future__ import annotations

from mailet_mta.api import Mail

from .whole_mail import WholeMailMatcher, positive_int_condition


class IsSingleRecipient(WholeMailMatcher):
    """Matches the mail when it has exactly one recipient. No condition."""

    takes_condition = False

    def matches(self, mail: Mail) -> bool:
        return len(mail.recipients) == 1


class TooManyRecipients(WholeMailMatcher):
    """Matches all recipients when there are more than ``n``: ``TooManyRecipients=50``."""

    condition_required = True

    def init_matcher(self) -> None:
        self.limit = positive_int_condition(self, "recipients")

    def matches(self, mail: Mail) -> bool:
        return len(mail.recipients) > self.limit
