"""``RelayLimit``: a mail that has passed through too many hosts (a mail loop)."""

from __future__ import annotations

from mailet_mta.api import Mail

from .whole_mail import WholeMailMatcher, positive_int_condition


class RelayLimit(WholeMailMatcher):
    """Matches all recipients when the message has at least ``n`` ``Received:`` headers:
    ``RelayLimit=30``. Only the header block is read, however large the message."""

    condition_required = True

    def init_matcher(self) -> None:
        self.limit = positive_int_condition(self, "Received: headers")

    def matches(self, mail: Mail) -> bool:
        # Count the names: get_all() would parse every Received value (costly).
        return mail.header_names().count("received") >= self.limit
