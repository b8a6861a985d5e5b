"""``WholeMailMatcher``: the base of matchers that decide for the whole mail."""

from __future__ import annotations

from mailet_mta.api import GenericMatcher, Mail, MailAddress


class WholeMailMatcher(GenericMatcher):
    """A matcher that answers all recipients or none: override ``matches(mail)``."""

    def match(self, mail: Mail) -> list[MailAddress]:
        return list(mail.recipients) if self.matches(mail) else []

    def matches(self, mail: Mail) -> bool:
        raise NotImplementedError


def positive_int_condition(matcher: GenericMatcher, what: str) -> int:
    """The matcher's condition as a whole number ≥ 1, or a start-up error naming ``what``."""
    try:
        value = int((matcher.condition or "").strip())
    except ValueError:
        matcher.fail(f"the condition must be a whole number of {what}, "
                      f"not {matcher.condition!r}")
    if value < 1:
        matcher.fail(f"the condition must be 1 or more, not {value}")
    return value
