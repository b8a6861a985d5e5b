"""``IsSenderInRRTLoop``: the sender's own rewrite mappings go round in a loop."""

from __future__ import annotations

from mailet_mta.api import GenericMatcher, Mail, MailAddress, MappingError

from ..awaiting import settled
from ..rewrite_mappings import resolve

LOOP_CODE = "5.4.6"   # the status RecipientRewriteTable gives a loop or too deep a chain


class IsSenderInRRTLoop(GenericMatcher):
    """Matches all recipients when resolving the sender's address through the
    recipient rewrite table loops (or nests too deep), as James's matcher does; no
    condition. Used before a bounce in the ``rrt-error`` processor: a notice to such
    a sender would be rewritten into the same loop, so
    ``<mailet match="IsSenderInRRTLoop" class="Null"/>`` drops it instead. A mail from
    the null sender ``<>`` never matches.
    """

    takes_condition = False

    async def match(self, mail: Mail) -> list[MailAddress]:
        if mail.sender is None:
            return []
        try:
            await resolve(mail.sender, self._lookup)
        except MappingError as exc:
            if LOOP_CODE in str(exc):
                return list(mail.recipients)
        return []

    async def _lookup(self, address: MailAddress) -> list[str]:
        return list(await settled(self.context.lookup_mappings(address)) or [])
