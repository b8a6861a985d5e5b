"""Mails the outgoing queue sends back into the pipeline: failures (to
``bounceProcessor``) and, when ``onSuccess`` is set, copies of what was delivered.

A failure mail carries the original message (the same blob), the failed recipients,
``error_message`` with the remote replies, and the attribute
``mailet_mta.delivery.error``: ``{recipient: {code, text, permanent}}`` that DSNBounce
and the IsRemoteDelivery*Error matchers read.
"""

from __future__ import annotations

from ..address import MailAddress
from ..mail import Mail, MessageSource
from .queue_store import FAILED, SENT, QueueEntry

ATTR_DELIVERY_ERROR = "mailet_mta.delivery.error"
ATTR_ARRIVAL = "mailet_mta.delivery.arrival"       # float: when the mail was queued
ATTR_QUEUE_MAIL = "mailet_mta.delivery.mail_name"  # str: the queued mail's name


def _sender(entry: QueueEntry) -> MailAddress | None:
    return MailAddress.parse(entry.sender) if entry.sender else None


def unreported_failures(entry: QueueEntry) -> list[dict]:
    return [r for r in entry.recipients if r["status"] == FAILED and not r.get("bounced")]


def unreported_successes(entry: QueueEntry) -> list[dict]:
    return [r for r in entry.recipients if r["status"] == SENT and not r.get("reported")]


def failure_mail(entry: QueueEntry, failed: list[dict], source: MessageSource,
                 state: str) -> Mail:
    """The Mail for ``bounceProcessor``: failed recipients, errors, the original message."""
    errors = {r["address"]: {"code": r.get("code"), "text": r.get("error") or "",
                             "permanent": bool(r.get("permanent", True))} for r in failed}
    attributes = dict(entry.attributes)
    attributes[ATTR_DELIVERY_ERROR] = errors
    attributes[ATTR_ARRIVAL] = entry.created
    attributes[ATTR_QUEUE_MAIL] = entry.mail_name
    message = "\n".join(f"{r['address']}: {r.get('error') or 'delivery failed'}"
                        for r in failed)
    return Mail(sender=_sender(entry), recipients=[MailAddress.parse(r["address"])
                                                   for r in failed],
                message=source, state=state, attributes=attributes, error_message=message)


def success_mail(entry: QueueEntry, sent: list[dict], source: MessageSource,
                 state: str) -> Mail:
    """A copy of a delivered mail for the ``onSuccess`` processor."""
    attributes = dict(entry.attributes)
    attributes[ATTR_QUEUE_MAIL] = entry.mail_name
    return Mail(sender=_sender(entry), recipients=[MailAddress.parse(r["address"])
                                                   for r in sent],
                message=source, state=state, attributes=attributes)
