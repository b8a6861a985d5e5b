"""Recipients tested against lists in the condition: HostIs, UserIs, RecipientIs,
RecipientIsRegex.
"""

from __future__ import annotations

import re

from mailet_mta.api import GenericMatcher, GenericRecipientMatcher, MailAddress

from ..address_lists import parse_addresses, parse_domains


class HostIs(GenericRecipientMatcher):
    """Matches recipients whose domain is in the list: ``HostIs=example.com,example.org``.

    Domains compare without regard to case (and IDNs in either form).
    """

    condition_required = True

    def init_matcher(self) -> None:
        try:
            self.domains = parse_domains(self.condition_list(), "HostIs")
        except ValueError as exc:
            self.fail(str(exc))

    def match_recipient(self, recipient: MailAddress) -> bool:
        return recipient.domain in self.domains


class UserIs(GenericRecipientMatcher):
    """Matches recipients whose local part is in the list: ``UserIs=postmaster,abuse``.

    The comparison is exact (local parts are case-sensitive, RFC 5321 §2.4); a quoted
    local part is compared without its quotes.
    """

    condition_required = True

    def init_matcher(self) -> None:
        self.users = set(self.condition_list())

    def match_recipient(self, recipient: MailAddress) -> bool:
        return recipient.user in self.users or recipient.local_part in self.users


class RecipientIs(GenericRecipientMatcher):
    """Matches recipients in the list: ``RecipientIs=a@example.com,b@example.com``."""

    condition_required = True

    def init_matcher(self) -> None:
        try:
            self.addresses = set(parse_addresses(self.condition_list(), "RecipientIs"))
        except ValueError as exc:
            self.fail(str(exc))

    def match_recipient(self, recipient: MailAddress) -> bool:
        return recipient in self.addresses


def compile_condition(matcher: GenericMatcher) -> re.Pattern[str]:
    """The matcher's condition compiled as a regular expression, or a start-up error."""
    try:
        return re.compile((matcher.condition or "").strip())
    except re.error as exc:
        matcher.fail(f"the condition {matcher.condition!r} is not a valid regular "
                      f"expression: {exc}")


class RecipientIsRegex(GenericRecipientMatcher):
    """Matches recipients whose whole address matches the regular expression:
    ``RecipientIsRegex=^(bob|alice)@example\\.com$``.

    The expression (Python ``re`` syntax) must match the entire ``local@domain`` text.
    """

    condition_required = True

    def init_matcher(self) -> None:
        self.pattern = compile_condition(self)

    def match_recipient(self, recipient: MailAddress) -> bool:
        return self.pattern.fullmatch(str(recipient)) is not None
