"""``HasMailAttribute``: the mail carries an attribute."""

from __future__ import annotations

from mailet_mta.api import Mail

from .whole_mail import WholeMailMatcher


class HasMailAttribute(WholeMailMatcher):
    """Matches all recipients when the mail has any of the named attributes:
    ``HasMailAttribute=org.example.scanned`` or ``HasMailAttribute=name1,name2``.

    Presence is what counts, whatever the value (even false or empty).
    """

    condition_required = True

    def init_matcher(self) -> None:
        self.names = self.condition_list()

    def matches(self, mail: Mail) -> bool:
        return any(name in mail.attributes for name in self.names)
