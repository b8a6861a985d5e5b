"""Recipients this server is responsible for: ``RecipientIsLocal`` and ``HostIsLocal``.

Both ask the mailet context, which answers from memory.
"""

from __future__ import annotations

from mailet_mta.api import GenericRecipientMatcher, MailAddress


class RecipientIsLocal(GenericRecipientMatcher):
    """Matches recipients that are mailboxes of this server (``context.is_local_email``).

    No condition: ``match="RecipientIsLocal"``.
    """

    takes_condition = False

    def match_recipient(self, recipient: MailAddress) -> bool:
        return bool(self.context.is_local_email(recipient))


class HostIsLocal(GenericRecipientMatcher):
    """Matches recipients whose domain is one of this server's mail domains.

    No condition: ``match="HostIsLocal"``. A recipient of a local domain that is not a
    local mailbox matches this but not ``RecipientIsLocal``: the usual
    "550 no such user" route.
    """

    takes_condition = False

    def match_recipient(self, recipient: MailAddress) -> bool:
        return bool(self.context.is_local_server(recipient.domain))
