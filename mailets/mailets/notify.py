"""``NotifySender`` and ``NotifyPostmaster``: a notice about a mail, with the mail
attached, to its sender or to the postmaster.

Both are Redirect with James's defaults for a notice: the new message holds a text
(``notice``/``message``, then the mail's details and error message) and the original
as a ``message/rfc822`` attachment; it goes from the postmaster with the null
reverse path ``<>`` (RFC 3834: nobody answers a notice automatically), is marked
``Auto-Submitted: auto-replied`` and the original continues (``passThrough`` true).

**No backscatter.** A sender address is only a claim unless the client proved it.
NotifySender writes to the sender only when the mail was accepted legitimately:
the client authenticated (SMTP AUTH) or is in ``authorizedAddresses``, or every
recipient of the mail is a mailbox of this server (it came in for delivery here).
A mail that was refused on its way through the pipeline (relay denied, unknown local
user) from anyone else gets no notice: it is logged instead, because its sender may be
forged and the notice would go to an innocent third party. A mail from ``<>`` never
gets one. NotifyPostmaster only ever writes to the postmaster.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from mailet_mta.api import (
    ATTR_AUTH_NETWORK,
    ATTR_AUTH_USER,
    Mail,
    MailetConfig,
    parse_bool,
)

from .redirect import Redirect, raw_headers

NOTICE_PARAMETERS = ("sender", "sendingAddress", "attachError", "attachStackTrace",
                     "prefix", "inline", "attachment", "passThrough", "fakeDomainCheck",
                     "to", "debug", "message", "notice")
DEFAULT_NOTICE = "A notice about the attached message from the mail server at {server}."


class _Notify(Redirect):
    """A notice to ``recipient`` (a Redirect special word) about the mail."""

    recipient = "sender"
    to_words: tuple[str, ...] = ("unaltered", "sender", "from")
    parameters = NOTICE_PARAMETERS

    def init(self, config: Any) -> None:
        self.config = config
        self.check_parameters(self.parameters)
        written = dict(config.parameters)
        for old, new in (("notice", "message"), ("sendingAddress", "sender")):
            if old in written:
                written.setdefault(new, written.pop(old))
        self.attach_error = self._flag(written, "attachError") or \
            self._flag(written, "attachStackTrace")
        for name in ("attachError", "attachStackTrace", "fakeDomainCheck", "debug"):
            written.pop(name, None)
        to = str(written.pop("to", self.to_words[-1] if self.recipient == "postmaster"
                             else "unaltered")).strip().lower()
        if to not in self.to_words:
            self.fail(f"to must be one of {', '.join(self.to_words)}, not {to!r}")
        params = {"inline": "none", "attachment": "message", "passThrough": "true",
                  "sender": "postmaster", **written, "recipients": self.recipient,
                  "reversePath": "null", "to": self.recipient if to == "sender" else to}
        self.config = MailetConfig(config.name, config.context, params,
                                   getattr(config, "processor", "root"),
                                   getattr(config, "source", None))
        self.init_mailet()

    def _flag(self, params: dict[str, Any], name: str) -> bool:
        try:
            return parse_bool(params.get(name, False), name)
        except Exception as exc:  # noqa: BLE001 - ConfigurationError with our source
            self.fail(str(getattr(exc, "message", exc)))

    def message_for(self, mail: Mail) -> str:
        server = self.context.server_name or "localhost"
        notice = str(self.message_text or DEFAULT_NOTICE.format(server=server))
        headers = mail.headers()
        subject, date = (" ".join(raw_headers(headers, n)[:1]) for n in ("Subject", "Date"))
        lines = [notice, "", "Message details:", f"  Subject: {subject}",
                 f"  Sent date: {date}",
                 f"  MAIL FROM: <{mail.sender or ''}>",
                 f"  RCPT TO: {', '.join(str(r) for r in mail.recipients)}",
                 f"  Size (in bytes): {mail.size}"]
        if mail.error_message and not self.attach_error:
            lines += ["", f"Error message: {mail.error_message}"]
        return "\n".join(lines)

    def _rebuilt(self, mail: Mail) -> EmailMessage:
        new = super()._rebuilt(mail)
        new["Auto-Submitted"] = "auto-replied"
        if "Date" not in new:
            new["Date"] = formatdate(usegmt=True)
        original_id = raw_headers(mail.headers(), "Message-ID")[:1]
        if original_id and original_id[0].strip():
            try:
                new["In-Reply-To"] = original_id[0].strip()
            except (IndexError, ValueError, TypeError):
                pass   # an unparsable Message-ID is not referred to
        if self.attach_error and mail.error_message:
            new.add_attachment(str(mail.error_message), filename="error.txt")
        return new


class NotifySender(_Notify):
    """Sends the mail's sender a notice with the mail attached (James's NotifySender).

    Parameters: ``notice`` (or ``message``): the text; ``sender`` (or
    ``sendingAddress``): From: of the notice, an address or ``postmaster`` (default),
    ``sender``, ``unaltered``; ``to``: the To: header, ``unaltered`` (default),
    ``sender`` or ``from``; ``prefix``: put before the Subject; ``inline`` (default
    ``none``) and ``attachment`` (default ``message``) as for Redirect; ``attachError``:
    the error message as an attachment instead of in the text; ``passThrough``
    (default true). ``fakeDomainCheck`` and ``debug`` are accepted and ignored.
    Sent only when the mail was accepted legitimately: see the module's rule.
    """

    info = "sends a notice to the sender"

    async def service(self, mail: Mail) -> None:
        if mail.sender is None:
            self.log.info("NotifySender: mail {mail_name} has the null sender; no notice",
                          mail_name=mail.name)
        elif not self.accepted_legitimately(mail):
            self.log.info("NotifySender: mail {mail_name} from unverified <{sender}> was "
                          "not accepted for local delivery; no notice (no backscatter)",
                          mail_name=mail.name, sender=str(mail.sender))
        else:
            await super().service(mail)
            return
        if not self.pass_through:
            mail.state = Mail.GHOST

    def accepted_legitimately(self, mail: Mail) -> bool:
        """The client proved who it is, or the mail came in for local mailboxes only."""
        if mail.get_attribute(ATTR_AUTH_USER) or mail.get_attribute(ATTR_AUTH_NETWORK):
            return True
        return bool(mail.recipients) and all(self.context.is_local_email(r)
                                             for r in mail.recipients)


class NotifyPostmaster(_Notify):
    """Sends the postmaster a notice with the mail attached (James's NotifyPostmaster).

    The parameters are NotifySender's, but ``to`` is ``unaltered`` or ``postmaster``
    (the default). The notice never goes anywhere but to the postmaster.
    """

    info = "sends a notice to the postmaster"
    recipient = "postmaster"
    to_words = ("unaltered", "postmaster")
