"""LocalDelivery: store the mail in the INBOX of every local recipient.

For each recipient the context resolves the local users it delivers to (after
aliases and mappings). Each user gets the message once, with ``Return-Path`` and
``Delivered-To`` trace headers added in front; the body itself is shared, not copied.
A recipient with no local user, or whose mailbox refuses the message permanently
(quota), is sent to the ``errorProcessor`` (default ``error``) in a copy of the mail
carrying the reason in ``error_message``. The mail is then finished (``ghost``).

Parameters: ``errorProcessor`` (processor for undeliverable recipients),
``folder`` (default ``INBOX``: the folder mail is filed into; created when the user
has no folder of that name) and ``folderAttribute`` (the name of a mail attribute;
when a mail carries it with a folder name as its value, the mail is filed there
instead — e.g. a spam filter's mailet sets ``org.example.folder: Junk`` and
LocalDelivery with ``folderAttribute: org.example.folder`` files spam into Junk,
without Sieve). A value that is not a usable folder name (empty, an empty level
such as ``a//b``, a control character, ``*`` or ``%``, over 255 characters) is
ignored with a log line, and ``folder`` is used.
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
    parameters = ("errorProcessor", "folder", "folderAttribute")

    def init_mailet(self) -> None:
        self.error_processor = str(self.get_init_parameter("errorProcessor", "error")).strip()
        self.folder = str(self.get_init_parameter("folder", "INBOX")).strip() or "INBOX"
        self.folder_attribute = str(self.get_init_parameter("folderAttribute", "")).strip()
        if not self.error_processor:
            self.fail("errorProcessor must name a processor")
        if _folder_problem(self.folder):
            self.fail(f"folder {self.folder!r}: {_folder_problem(self.folder)}")

    def folder_of(self, mail: Mail) -> str:
        """The folder ``mail`` is filed into: its ``folderAttribute`` when that holds
        a usable folder name, else ``folder``."""
        if not self.folder_attribute:
            return self.folder
        value = mail.get_attribute(self.folder_attribute)
        if value is None:
            return self.folder
        problem = _folder_problem(value)
        if problem:
            self.log.warn("LocalDelivery of {mail}: attribute {attr} = {value!r} is not "
                          "a folder name ({problem}); filed into {folder}",
                          mail=mail.name, attr=self.folder_attribute, value=value,
                          problem=problem, folder=self.folder)
            return self.folder
        return str(value)

    def required_processors(self) -> list[str]:
        """Processors this mailet sends mails to (checked when the config loads)."""
        return [self.error_processor]

    async def service(self, mail: Mail) -> None:
        # A coroutine, not inlineCallbacks: when the context answers at once (the
        # directory in memory, a store queued in the run's unit of work) nothing waits
        # and no Deferred is made per recipient.
        return_path = f"<{mail.sender}>" if mail.sender is not None else "<>"
        delivered: set[str] = set()
        folder = self.folder_of(mail)
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
                        user, mail, folder=folder,
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


def _folder_problem(name: object) -> str | None:
    """Why ``name`` cannot be a folder name, or None when it can."""
    if not isinstance(name, str) or not name or len(name) > 255:
        return "a folder name has 1 to 255 characters"
    if any(ord(c) < 0x20 or c == "\x7f" or c in "*%" for c in name):
        return "no control characters, * or %"
    if "" in name.split("/"):
        return "every level between / must be named"
    return None


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
