"""LocalDelivery: store the mail in the INBOX of every local recipient.

For each recipient the context resolves the local users it delivers to (after
aliases and mappings). Each user gets the message once, with ``Return-Path`` and
``Delivered-To`` trace headers added in front; the body itself is shared, not copied.
A recipient with no local user, or whose mailbox refuses the message permanently
(quota), is sent to the ``errorProcessor`` (default ``error``) in a copy of the mail
carrying the reason in ``error_message``. The mail is then finished (``ghost``).

Parameters: ``errorProcessor`` (processor for undeliverable recipients),
``folder`` (default ``INBOX``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from mailet_mta.api import (
    ATTR_RECIPIENT_HEADERS,
    GenericMailet,
    Mail,
    MailAddress,
    MessagingError,
    TemporaryError,
)

from ..awaiting import settled


class LocalDelivery(GenericMailet):
    """Deliver to local mailboxes; unknown recipients go to the error processor."""

    info = "Local delivery to the users' mailboxes"
    parameters = ("errorProcessor", "folder")

    def init_mailet(self) -> None:
        self.error_processor = str(self.get_init_parameter("errorProcessor", "error")).strip()
        self.folder = str(self.get_init_parameter("folder", "INBOX")).strip() or "INBOX"
        if not self.error_processor:
            self.fail("errorProcessor must name a processor")

    def required_processors(self) -> list[str]:
        """Processors this mailet sends mails to (checked when the config loads)."""
        return [self.error_processor]

    async def service(self, mail: Mail) -> None:
        # A coroutine, not inlineCallbacks: when the context answers at once (the
        # directory in memory, a store queued in the run's unit of work) nothing waits
        # and no Deferred is made per recipient.
        return_path = f"<{mail.sender}>" if mail.sender is not None else "<>"
        delivered: set[str] = set()
        failed: list[tuple[MailAddress, str]] = []
        for rcpt in mail.recipients:
            local_users = await settled(self.context.local_users_of(rcpt))
            if not local_users:
                failed.append((rcpt, f"550 5.1.1 <{rcpt}>: mailbox unknown"))
                continue
            for user in local_users:
                if user in delivered:
                    continue
                try:
                    await settled(self.context.store_in_mailbox(
                        user, mail, folder=self.folder,
                        prefix_headers=_trace_headers(mail, rcpt, return_path)))
                except TemporaryError:
                    raise
                except MessagingError as exc:
                    failed.append((rcpt, _reason(exc, rcpt)))
                    break
                delivered.add(user)
        for rcpt, reason in failed:
            await settled(self._send_to_error(mail, rcpt, reason))
        mail.state = Mail.GHOST

    def _send_to_error(self, mail: Mail, rcpt: MailAddress, reason: str) -> Any:
        copy = mail.duplicate()
        copy.recipients = [rcpt]
        copy.error_message = reason
        copy.state = self.error_processor
        self.log.info("LocalDelivery of {mail} to <{rcpt}> failed: {reason}",
                      mail=mail.name, rcpt=str(rcpt), reason=reason)
        return defer.maybeDeferred(self.context.send_mail, copy, state=self.error_processor)


def _trace_headers(mail: Mail, rcpt: MailAddress,
                   return_path: str) -> list[tuple[str, str]]:
    """Return-Path, then the recipient's own headers (AddDeliveredToHeader…), with one
    ``Delivered-To`` for the recipient unless those headers already hold one."""
    own = (mail.get_attribute(ATTR_RECIPIENT_HEADERS) or {}).get(str(rcpt), [])
    headers = [("Return-Path", return_path)] + [(str(n), str(v)) for n, v in own]
    if not any(name.lower() == "delivered-to" for name, _ in headers):
        headers.append(("Delivered-To", str(rcpt)))
    return headers


def _reason(exc: Exception, rcpt: MailAddress) -> str:
    """The SMTP-style reason of a permanent storage failure (e.g. a full mailbox)."""
    text = str(exc).strip()
    if text[:3].isdigit():
        return text
    return f"550 5.2.0 <{rcpt}>: {text or type(exc).__name__}"
