"""``SizeGreaterThan``: large messages."""

from __future__ import annotations

from mailet_mta.api import ConfigurationError, Mail, parse_size

from .whole_mail import WholeMailMatcher


class SizeGreaterThan(WholeMailMatcher):
    """Matches all recipients when the message is larger than the size:
    ``SizeGreaterThan=10k`` (units k, m, g are binary: 10k = 10240 octets; no unit
    means octets)."""

    condition_required = True

    def init_matcher(self) -> None:
        try:
            self.limit = parse_size(self.condition, "the condition")
        except ConfigurationError as exc:
            self.fail(exc.message)

    def matches(self, mail: Mail) -> bool:
        return mail.size > self.limit
