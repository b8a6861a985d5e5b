"""``AddDeliveredToHeader``: a ``Delivered-To`` header for each recipient's own copy."""

from __future__ import annotations

from mailet_mta.api import ATTR_RECIPIENT_HEADERS, GenericMailet, Mail, MailAddress

DELIVERED_TO = "Delivered-To"


def add_recipient_header(mail: Mail, recipient: MailAddress, name: str,
                         value: str) -> None:
    """Ask LocalDelivery to put ``name: value`` in front of ``recipient``'s copy only
    (once: the same header is not recorded twice)."""
    table = dict(mail.get_attribute(ATTR_RECIPIENT_HEADERS) or {})
    headers = [list(h) for h in table.get(str(recipient), [])]
    if [name, value] not in headers:
        headers.append([name, value])
    table[str(recipient)] = headers
    mail.set_attribute(ATTR_RECIPIENT_HEADERS, table)


class AddDeliveredToHeader(GenericMailet):
    """Records the de-facto standard (qmail) ``Delivered-To: <recipient>`` header for
    every recipient, as James does: the header is per recipient, so it is not written
    into the shared message but kept in the mail attribute ``ATTR_RECIPIENT_HEADERS``,
    and LocalDelivery puts it in front of that recipient's stored copy.

    LocalDelivery writes ``Delivered-To`` by itself too; with this mailet before it
    the header still appears once. No parameters.
    """

    info = "adds a Delivered-To header for each recipient's copy"
    parameters = ()

    def service(self, mail: Mail) -> None:
        for recipient in mail.recipients:
            add_recipient_header(mail, recipient, DELIVERED_TO, str(recipient))
