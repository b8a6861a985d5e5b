"""Bounce: a plain non-delivery notice to the sender, with the original attached.

Parameters (James's): ``attachment`` — ``message`` (default: the whole original
message), ``heads`` (its header only) or ``none``; ``notice`` — the text of the notice;
``sender`` — From: of the notice (default the postmaster); ``prefix`` — Subject prefix;
``passThrough`` — keep processing the mail afterwards (default true, as in James, so
the next mailet can keep a record of it in a repository; false ghosts it);
``bounceSizeLimit`` — at most this many octets of the original are attached (default
50000, as Postfix's ``bounce_size_limit``; the original is never parsed whole). The
notice is built on a mailet worker thread.
The notice goes from the null sender ``<>``, and a mail from ``<>`` is never bounced.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from mailet_mta.api import GenericMailet, Mail

from ..returned_original import headers_part, original_part, size_limit_parameter
from .dsn_bounce import POLICY, notice_envelope

DEFAULT_NOTICE = ("We were unable to deliver the attached message because of an error "
                  "in the mail server.")
_ATTACHMENTS = {"message": "message", "all": "message", "heads": "heads",
                "headers": "heads", "none": "none"}


class Bounce(GenericMailet):
    """Send the sender a plain-text notice that the mail could not be delivered."""

    info = "Bounce: plain non-delivery notice to the sender"
    parameters = ("attachment", "notice", "sender", "prefix", "passThrough", "debug",
                  "inline", "message", "bounceSizeLimit")

    def init_mailet(self) -> None:
        kind = str(self.get_init_parameter("attachment", "message")).strip().lower()
        if kind not in _ATTACHMENTS:
            self.fail(f"attachment must be message, heads or none, not {kind!r}")
        self.attachment = _ATTACHMENTS[kind]
        self.notice = str(self.get_init_parameter(
            "notice", self.get_init_parameter("message", DEFAULT_NOTICE)))
        self.from_address = self.get_init_parameter("sender")
        self.prefix = str(self.get_init_parameter("prefix", ""))
        self.pass_through = self.get_bool("passThrough", True)
        self.size_limit = size_limit_parameter(self)

    async def service(self, mail: Mail) -> None:
        if mail.sender is None:
            self.log.info("Bounce: {name} has the null sender; no notice is sent",
                          name=mail.name)
        else:
            notice = await self.context.run_in_worker(self.build_notice, mail)
            await self.context.send_mail(notice_envelope(mail, notice), state="root")
        if not self.pass_through:
            mail.state = Mail.GHOST

    def build_notice(self, mail: Mail) -> bytes:
        ctx = self.context
        msg = EmailMessage(policy=POLICY)
        msg["From"] = str(self.from_address or ctx.postmaster)
        msg["To"] = str(mail.sender)
        subject = mail.headers().get("Subject", "")
        msg["Subject"] = f"{self.prefix}Undeliverable mail: {subject}".strip()
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=ctx.server_name)
        msg["Auto-Submitted"] = "auto-replied"
        lines = [self.notice, ""]
        if mail.error_message:
            lines += ["Error message:", mail.error_message, ""]
        lines += ["Failed recipient(s):"] + [f"  {r}" for r in mail.recipients]
        attached, note = None, None
        if self.attachment == "message":
            attached, note = original_part(mail, self.size_limit)
        elif self.attachment == "heads":
            attached = headers_part(mail, self.size_limit)
        if note:
            lines += ["", note]
        msg.set_content("\n".join(lines) + "\n")
        if attached is not None:
            msg.make_mixed()
            msg.attach(attached)
        return msg.as_bytes(policy=POLICY)
