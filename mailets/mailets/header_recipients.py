"""``UseHeaderRecipients``: send the mail again, to the addresses in its headers."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail, MailAddress

from ..awaiting import settled
from .redirect import header_addresses

MAX_HEADER_RECIPIENTS = 1000   # recipients read from the headers of one message


class UseHeaderRecipients(GenericMailet):
    """Replaces the envelope recipients with those of the ``Mail-For`` header, or when
    there is none, of ``To`` and ``Cc``, and puts the mail back into ``root`` (the
    original ends). Useful when a relay on the way replaced the recipients with one
    fixed address: ``match="RecipientIs=forwarded@example.com"``.

    The new mail keeps the original's SMTP attributes and is **not** marked as sent by
    a mailet: addresses read from a message are the sender's words, so the relay
    rules of ``root``/``transport`` apply to them exactly as to the client that sent
    the mail. At most ``MAX_HEADER_RECIPIENTS`` addresses are taken.

    Parameter: ``debug`` (accepted for James compatibility; the choice is logged).
    """

    info = "re-sends the mail to the recipients named in its headers"
    parameters = ("debug",)

    async def service(self, mail: Mail) -> None:
        headers = mail.headers()
        recipients = _unique(header_addresses(headers, "Mail-For"))
        if not recipients:
            recipients = _unique(header_addresses(headers, "To")
                                 + header_addresses(headers, "Cc"))
        if len(recipients) > MAX_HEADER_RECIPIENTS:
            self.log.warn("UseHeaderRecipients: mail {mail_name} names {n} recipients; "
                          "keeping the first {limit}", mail_name=mail.name,
                          n=len(recipients), limit=MAX_HEADER_RECIPIENTS)
            recipients = recipients[:MAX_HEADER_RECIPIENTS]
        self.log.info("UseHeaderRecipients: mail {mail_name} goes to {recipients}",
                      mail_name=mail.name, recipients=", ".join(map(str, recipients)))
        if recipients:
            copy = mail.duplicate()
            copy.recipients = recipients
            copy.state = Mail.DEFAULT_STATE
            await settled(self.context.send_mail(copy, state=Mail.DEFAULT_STATE))
        mail.state = Mail.GHOST


def _unique(addresses: list[MailAddress]) -> list[MailAddress]:
    seen: set[str] = set()
    out: list[MailAddress] = []
    for address in addresses:
        if str(address) not in seen:
            seen.add(str(address))
            out.append(address)
    return out
