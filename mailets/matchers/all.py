"""``All``: every recipient of every mail."""

from __future__ import annotations

from mailet_mta.api import GenericMatcher, Mail, MailAddress


class All(GenericMatcher):
    """Matches all recipients. Takes no condition: ``match="All"``."""

    takes_condition = False

    def match(self, mail: Mail) -> list[MailAddress]:
        return list(mail.recipients)
