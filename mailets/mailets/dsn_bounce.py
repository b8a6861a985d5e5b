"""DSNBounce: tell the sender which recipients failed, as an RFC 3464 delivery report.

The report is a ``multipart/report; report-type=delivery-status`` with a human part,
a ``message/delivery-status`` part (Reporting-MTA, Original-Envelope-Id, Arrival-Date,
and per recipient Final-Recipient, Original-Recipient, Action, Status,
Diagnostic-Code) and the original message — or only its header when the sender asked
for ``RET=HDRS``. It goes from the null sender ``<>`` to the mail's sender, so a report
is never answered by another report, and a mail from ``<>`` gets none at all.

Per-recipient errors come from the ``mailet_mta.delivery.error`` attribute that remote
delivery sets (``{recipient: {code, text, permanent}}``); without it every recipient
failed with the mail's error message.

The original is returned up to ``bounceSizeLimit`` octets (default 50000, as Postfix's
``bounce_size_limit``), never parsed whole; the report is built on a mailet worker
thread.
"""

from __future__ import annotations

import email.policy
import re
import time
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import format_datetime, formatdate, make_msgid
from typing import Any

from mailet_mta.api import (
    ATTR_DSN_ENVID,
    ATTR_DSN_RCPT,
    ATTR_DSN_RET,
    ATTR_SENT_BY_MAILET,
    GenericMailet,
    Mail,
)

from ..returned_original import headers_part, original_part, size_limit_parameter

ERROR_ATTR = "mailet_mta.delivery.error"
ARRIVAL_ATTR = "mailet_mta.delivery.arrival"
POLICY = email.policy.SMTP
_STATUS_RE = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_REPLY_RE = re.compile(r"said: ([245]\d\d)[ -]?(.*)$", re.S)


def notice_envelope(mail: Mail, message_bytes: bytes) -> Mail:
    """The notice as a Mail from ``<>`` to the original sender, marked as mailet-made."""
    recipients = [mail.sender] if mail.sender is not None else []
    return Mail(sender=None, recipients=recipients, message=message_bytes,
                attributes={ATTR_SENT_BY_MAILET: True})


def status_of(error: dict[str, Any]) -> str:
    """RFC 3463 status for one recipient's error."""
    text = error.get("text") or ""
    m = _STATUS_RE.search(text.rpartition("said: ")[2])
    if m:
        return m.group(1)
    code = error.get("code")
    permanent = error.get("permanent", True)
    if code and 400 <= int(code) < 500:
        return "4.0.0"
    return "5.0.0" if permanent else "4.0.0"


def diagnostic_of(error: dict[str, Any]) -> str | None:
    """``smtp; 550 5.1.1 …`` from the remote reply kept in the error text."""
    text = (error.get("text") or "").strip()
    m = _REPLY_RE.search(text)
    if m:
        return f"smtp; {m.group(1)} {m.group(2).strip()}".strip()
    if error.get("code"):
        return f"smtp; {error['code']} {text}".strip()
    return None


class DSNBounce(GenericMailet):
    """Send an RFC 3464 delivery status notification for the mail's recipients.

    Parameters: ``passThrough`` (default true, as in James: the mail goes on to the
    next mailet; false ghosts it),
    ``sender`` (From: of the report; default the postmaster), ``messageString`` (the
    human-readable text), ``prefix`` (Subject prefix), ``bounceSizeLimit`` (octets of
    the original returned at most; default 50000).
    """

    info = "DSNBounce: RFC 3464 delivery status notification to the sender"
    parameters = ("passThrough", "sender", "messageString", "prefix", "debug", "attachment",
                  "bounceSizeLimit")

    def init_mailet(self) -> None:
        self.pass_through = self.get_bool("passThrough", True)
        self.from_address = self.get_init_parameter("sender")
        self.text = self.get_init_parameter(
            "messageString",
            "This is an automatically generated message from the mail server.\n\n"
            "Your message could not be delivered to one or more recipients.")
        self.prefix = self.get_init_parameter("prefix", "")
        self.size_limit = size_limit_parameter(self)

    async def service(self, mail: Mail) -> None:
        if mail.sender is None:
            self.log.info("DSNBounce: {name} has the null sender; no report is sent",
                          name=mail.name)
        else:
            rows = self.report_rows(mail)
            if rows:
                report = await self.context.run_in_worker(self.build_report, mail, rows)
                await self.context.send_mail(notice_envelope(mail, report), state="root")
        if not self.pass_through:
            mail.state = Mail.GHOST

    # -- what to report ----------------------------------------------------------------
    def report_rows(self, mail: Mail) -> list[dict[str, Any]]:
        """One dict per recipient to report: address, orcpt, action, status, diagnostic."""
        errors = mail.get_attribute(ERROR_ATTR) or {}
        dsn_rcpt = mail.get_attribute(ATTR_DSN_RCPT) or {}
        rows = []
        for rcpt in mail.recipients:
            address = str(rcpt)
            error = errors.get(address) or {"code": None, "text": mail.error_message or "",
                                            "permanent": True}
            action = "delayed" if error.get("delayed") else "failed"
            params = dsn_rcpt.get(address) or {}
            notify = [n.upper() for n in params.get("notify") or []]
            if notify and ("NEVER" in notify or
                           ("FAILURE" if action == "failed" else "DELAY") not in notify):
                continue
            rows.append({"address": address, "orcpt": params.get("orcpt"), "action": action,
                         "status": status_of(error), "diagnostic": diagnostic_of(error),
                         "text": error.get("text") or mail.error_message or ""})
        return rows

    # -- building -----------------------------------------------------------------------------
    def build_report(self, mail: Mail, rows: list[dict[str, Any]]) -> bytes:
        ctx = self.context
        msg = EmailMessage(policy=POLICY)
        msg["From"] = f"Mail Delivery Subsystem <{self.from_address or ctx.postmaster}>"
        msg["To"] = str(mail.sender)
        failed = any(r["action"] == "failed" for r in rows)
        msg["Subject"] = (f"{self.prefix}Delivery Status Notification "
                          f"({'Failure' if failed else 'Delay'})").strip()
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=ctx.server_name)
        msg["Auto-Submitted"] = "auto-replied"
        original_id = mail.headers().get("Message-ID")
        if original_id:
            msg["In-Reply-To"] = original_id
            msg["References"] = original_id
        original, note = self._original_part(mail)
        msg.set_content(self._human_text(rows, note))
        msg.make_mixed()
        msg.replace_header("Content-Type", str(msg.get("Content-Type")).replace(
            "multipart/mixed", "multipart/report"))
        msg.set_param("report-type", "delivery-status")
        msg.attach(self._status_part(mail, rows))  # type: ignore[arg-type]  # any Message
        msg.attach(original)  # type: ignore[arg-type]
        return msg.as_bytes(policy=POLICY)

    def _human_text(self, rows: list[dict[str, Any]], note: str | None = None) -> str:
        lines = [str(self.text).strip(), ""]
        for r in rows:
            lines.append(f"  {r['address']}: {r['action']}")
            if r["text"]:
                lines.append(f"    {r['text']}")
        if note:
            lines += ["", note]
        return "\n".join(lines) + "\n"

    def _status_part(self, mail: Mail, rows: list[dict[str, Any]]) -> Message:
        per_message = Message(policy=POLICY)
        per_message["Reporting-MTA"] = f"dns; {self.context.server_name}"
        envid = mail.get_attribute(ATTR_DSN_ENVID)
        if envid:
            per_message["Original-Envelope-Id"] = envid
        arrival = mail.get_attribute(ARRIVAL_ATTR) or mail.last_updated or time.time()
        per_message["Arrival-Date"] = format_datetime(
            datetime.fromtimestamp(float(arrival), UTC))
        blocks: list[Message | str] = [per_message]
        for r in rows:
            block = Message(policy=POLICY)
            if r["orcpt"]:
                orcpt = r["orcpt"] if ";" in r["orcpt"] else f"rfc822; {r['orcpt']}"
                block["Original-Recipient"] = orcpt
            block["Final-Recipient"] = f"rfc822; {r['address']}"
            block["Action"] = r["action"]
            block["Status"] = r["status"]
            if r["diagnostic"]:
                block["Diagnostic-Code"] = r["diagnostic"]
            blocks.append(block)
        part = Message(policy=POLICY)
        part["Content-Type"] = "message/delivery-status"
        part.set_payload(blocks)
        return part

    def _original_part(self, mail: Mail) -> tuple[Message, str | None]:
        """The returned original (its header only for ``RET=HDRS``), and a line for
        the text when it is not returned whole."""
        if str(mail.get_attribute(ATTR_DSN_RET) or "").upper() == "HDRS":
            return headers_part(mail, self.size_limit), None
        return original_part(mail, self.size_limit)
