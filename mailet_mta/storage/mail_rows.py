"""A Mail's envelope as the columns of a database row, written one way everywhere.

The spool, the repositories and the outgoing queue each keep a mail's envelope; they
all serialise it here, so a mail read back from any of them has the same sender,
recipients and attributes. Attribute values JSON cannot hold (a ``datetime``, a
``set``) are kept as their ``str()``: a mailet's odd attribute never makes the commit
of a whole run fail.
"""

from __future__ import annotations

import json

_ATTRIBUTES = json.JSONEncoder(default=str)


def attributes_json(attributes: dict) -> str:
    """``attributes`` as the JSON text of an ``attributes`` column."""
    return _ATTRIBUTES.encode(attributes)


def recipients_json(recipients) -> str:
    """The recipients (MailAddress or str) as a JSON list of address strings."""
    return json.dumps([str(r) for r in recipients])


def envelope_row(mail) -> dict:
    """The envelope columns every table of mails has: name, state, sender, recipients,
    attributes, error_message, remote_addr, remote_host."""
    return dict(
        name=mail.name, state=mail.state,
        sender=str(mail.sender) if mail.sender is not None else None,
        recipients=recipients_json(mail.recipients),
        attributes=attributes_json(mail.attributes), error_message=mail.error_message,
        remote_addr=mail.remote_addr, remote_host=mail.remote_host)
