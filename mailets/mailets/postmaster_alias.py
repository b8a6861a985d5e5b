"""``PostmasterAlias``: postmaster@ any local domain reaches the configured postmaster."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail


class PostmasterAlias(GenericMailet):
    """Rewrites recipients ``postmaster@<local domain>`` (any case) to the server's
    postmaster address (``context.postmaster``), as RFC 5321 §4.5.1 requires every
    domain to accept. No parameters. Other recipients are kept in order; duplicates
    the rewrite creates are dropped.
    """

    info = "sends postmaster@<local domain> to the postmaster"
    parameters = ()

    def service(self, mail: Mail) -> None:
        postmaster = self.context.postmaster
        changed = False
        recipients = []
        for rcpt in mail.recipients:
            if rcpt.user.lower() == "postmaster" and rcpt != postmaster \
                    and self.context.is_local_server(rcpt.domain):
                rcpt = postmaster
                changed = True
            if rcpt not in recipients:
                recipients.append(rcpt)
        if changed:
            mail.recipients = recipients
