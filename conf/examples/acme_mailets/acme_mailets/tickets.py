"""Route support mail by ticket number: a matcher and a mailet for mailet-mta."""

import re

from mailet_mta.api import GenericMailet, GenericMatcher


class SubjectHasTicket(GenericMatcher):
    """Matches every recipient when the Subject carries ``[PREFIX-123]``.

    Condition: the ticket prefix, e.g. ``match="SubjectHasTicket=ACME"``.
    """

    condition_required = True

    def init_matcher(self):
        prefix = self.condition.strip()
        if not prefix.isalnum():
            self.fail(f"the ticket prefix must be letters and digits, not {prefix!r}")
        self.pattern = re.compile(r"\[%s-(\d+)\]" % re.escape(prefix), re.I)

    def match(self, mail):
        subject = mail.headers().get("Subject", "")
        return list(mail.recipients) if self.pattern.search(subject) else []


class TagTicket(GenericMailet):
    """Adds ``X-Ticket: <number>`` and records it as the mail attribute ``acme.ticket``.

    Parameters: ``header`` (default ``X-Ticket``), ``prefix`` (required).
    """

    parameters = ("header", "prefix")

    def init_mailet(self):
        self.header = self.get_init_parameter("header", "X-Ticket")
        prefix = self.get_required("prefix")
        self.pattern = re.compile(r"\[%s-(\d+)\]" % re.escape(prefix), re.I)

    def service(self, mail):
        found = self.pattern.search(mail.message.get("Subject", ""))
        if found:
            del mail.message[self.header]
            mail.message[self.header] = found.group(1)
            mail.set_attribute("acme.ticket", int(found.group(1)))
