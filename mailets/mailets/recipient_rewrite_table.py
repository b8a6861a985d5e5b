"""``RecipientRewriteTable``: aliases, forwards, catch-alls, domain aliases, regex
rewrites and refusals, applied to the envelope recipients.

The mapping syntax is in :mod:`mailets.rewrite_mappings`.
"""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail, MailAddress, MappingError

from ..awaiting import settled
from ..rewrite_mappings import lookup_in, parse_mapping_entries, resolve


class RecipientRewriteTable(GenericMailet):
    """Rewrites each recipient through the recipient rewrite table.

    Mappings come from the ``mapping`` parameter (entries ``source=target;target``,
    e.g. ``sales@example.com=bob@example.com;alice@example.com``; one per line, comma
    separated, or a YAML list) and, for addresses it does not mention, from the
    server's table (``context.lookup_mappings``; ``mailet-mta`` keeps it in the
    database). For each recipient the exact address is looked up first, then
    ``*@domain``, then the bare ``domain``.

    A mapping to an address of another domain is a forward the administrator set
    up: those addresses leave in a copy of the mail sent by this mailet
    (``context.send_mail``, so ``SentByMailet`` lets it be relayed whoever sent the
    original) to ``forwardProcessor``, as James does. Remote recipients the client
    named itself stay in the mail; the rest of the pipeline routes them. Recipients
    refused by an ``error:`` mapping, a bad target or a loop go to ``errorProcessor``
    in a copy of the mail whose error message says why.

    Parameters: ``errorProcessor`` (default ``error``), ``forwardProcessor`` (default
    ``root``), ``mapping`` (or ``mappings``).
    """

    info = "applies the recipient rewrite table"
    parameters = ("errorProcessor", "forwardProcessor", "mapping", "mappings")

    def init_mailet(self) -> None:
        self.error_processor = str(self.get_init_parameter("errorProcessor", "error")).strip()
        self.forward_processor = str(self.get_init_parameter("forwardProcessor",
                                                             "root")).strip() or "root"
        values = [v for v in (self.get_init_parameter("mapping"),
                              self.get_init_parameter("mappings")) if v is not None]
        try:
            self.table = parse_mapping_entries(values)
        except ValueError as exc:
            self.fail(f"mapping {exc}")

    def required_processors(self) -> list[str]:
        """The processors this mailet sends mail to (checked at start-up)."""
        return [self.error_processor, self.forward_processor]

    async def lookup(self, address: MailAddress) -> list[str]:
        """The targets for ``address``: configured mappings first, then the server's."""
        configured = lookup_in(self.table, address)
        if configured:
            return configured
        return list(await settled(self.context.lookup_mappings(address)) or [])

    async def service(self, mail: Mail) -> None:
        rewritten: list[MailAddress] = []
        forwards: list[MailAddress] = []
        refused: dict[str, list[MailAddress]] = {}
        for rcpt in mail.recipients:
            try:
                targets = await resolve(rcpt, self.lookup)
            except MappingError as exc:
                refused.setdefault(str(exc), []).append(rcpt)
                continue
            for target in targets:
                remote = target != rcpt and not self.context.is_local_server(target.domain)
                out = forwards if remote else rewritten
                if target not in out:
                    out.append(target)
        for message, recipients in refused.items():
            self.log.info("RecipientRewriteTable: mail {mail_name}: {recipients} refused: "
                          "{error}", mail_name=mail.name, error=message,
                          recipients=", ".join(str(r) for r in recipients))
            await self._send_copy(mail, recipients, self.error_processor, message)
        if forwards:
            self.log.info("RecipientRewriteTable: mail {mail_name} forwarded to "
                          "{recipients}", mail_name=mail.name,
                          recipients=", ".join(str(r) for r in forwards))
            await self._send_copy(mail, forwards, self.forward_processor)
        if rewritten != mail.recipients:
            mail.recipients = rewritten
        if not rewritten:
            mail.state = Mail.GHOST

    async def _send_copy(self, mail: Mail, recipients: list[MailAddress], state: str,
                         error_message: str | None = None) -> None:
        copy = mail.duplicate()
        copy.recipients = recipients
        if error_message is not None:
            copy.error_message = error_message
        copy.state = state
        await settled(self.context.send_mail(copy, state=state))
