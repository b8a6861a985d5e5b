"""``Forward``: send an unchanged copy of the mail to other recipients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailet_mta.api import ATTR_SENT_BY_MAILET, GenericMailet, Mail, MailAddress

from ..address_lists import parse_addresses, split_list
from ..awaiting import settled


def resend_copy(mailet: GenericMailet, mail: Mail, recipients: Iterable[MailAddress], *,
                sender: Any = ...) -> Any:
    """A copy of ``mail`` for ``recipients``, marked as sent by a mailet, queued in
    ``root``; returns what ``context.send_mail`` returned (a Deferred)."""
    copy = mail.duplicate()
    copy.recipients = list(recipients)
    copy.state = Mail.DEFAULT_STATE
    copy.error_message = None
    if sender is not ...:
        copy.sender = sender
    copy.set_attribute(ATTR_SENT_BY_MAILET, True)
    return mailet.context.send_mail(copy, state=Mail.DEFAULT_STATE)


def address_list_parameter(mailet: GenericMailet, name: str, *,
                           required: bool = False) -> list[MailAddress]:
    """Parse an address-list parameter; ``postmaster`` means the server's postmaster."""
    items = split_list(mailet.get_init_parameter(name))
    if required and not items:
        mailet.fail(f"the parameter {name!r} is required (comma-separated addresses)")
    postmaster = [i for i in items if i.lower() == "postmaster"]
    try:
        addresses = parse_addresses([i for i in items if i.lower() != "postmaster"], name)
    except ValueError as exc:
        mailet.fail(str(exc))
    if postmaster:
        addresses.append(mailet.context.postmaster)
    return addresses


class Forward(GenericMailet):
    """Re-sends the message unchanged, with the same sender, to other recipients.

    Parameters:

    - ``forwardTo`` (required): comma-separated addresses (``postmaster`` means the
      server's postmaster).
    - ``passThrough`` (default false): true lets the original continue too; false ends it.

    The copy starts in the ``root`` processor and carries the ``SentByMailet`` mark.
    """

    info = "forwards the mail to other recipients"
    parameters = ("forwardTo", "passThrough")

    def init_mailet(self) -> None:
        self.forward_to = address_list_parameter(self, "forwardTo", required=True)
        self.pass_through = self.get_bool("passThrough", False)

    async def service(self, mail: Mail) -> None:
        await settled(resend_copy(self, mail, self.forward_to))
        if not self.pass_through:
            mail.state = Mail.GHOST
