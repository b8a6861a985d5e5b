"""Facts the SMTP session recorded on the mail: SMTPAuthSuccessful, SMTPAuthUserIs,
SMTPIsAuthNetwork, SentByMailet. Each matches all recipients or none.
"""

from __future__ import annotations

from mailet_mta.api import ATTR_AUTH_NETWORK, ATTR_SENT_BY_MAILET, Mail

from .whole_mail import WholeMailMatcher


class SMTPAuthSuccessful(WholeMailMatcher):
    """Matches mails whose client authenticated with SMTP AUTH. No condition."""

    takes_condition = False

    def matches(self, mail: Mail) -> bool:
        return mail.auth_user is not None


class SMTPAuthUserIs(WholeMailMatcher):
    """Matches mails submitted by one of the listed SMTP AUTH users:
    ``SMTPAuthUserIs=bob,alice@example.com``. Names compare without regard to case."""

    condition_required = True

    def init_matcher(self) -> None:
        self.users = {u.lower() for u in self.condition_list()}

    def matches(self, mail: Mail) -> bool:
        user = mail.auth_user
        return user is not None and str(user).lower() in self.users


class SMTPIsAuthNetwork(WholeMailMatcher):
    """Matches mails whose client address is in ``smtpserver.authorizedAddresses``
    (the session sets the attribute ``mailet_mta.smtp.auth_network``). No condition."""

    takes_condition = False

    def matches(self, mail: Mail) -> bool:
        return bool(mail.get_attribute(ATTR_AUTH_NETWORK))


class SentByMailet(WholeMailMatcher):
    """Matches mails a mailet generated (bounces, forwards, redirects). No condition."""

    takes_condition = False

    def matches(self, mail: Mail) -> bool:
        return bool(mail.get_attribute(ATTR_SENT_BY_MAILET))
