"""The part of a non-delivery notice that returns the original message, bounded.

Like Postfix's ``bounce_size_limit``: a notice carries at most ``limit`` octets of the
original (header first, then as much body as fits, cut at a line end), so a 50 MB or
100,000-part mail costs a bounded read and no full parse. An ASCII original is
attached as it is; an 8-bit one is parsed first (the email package writes 8-bit
attached messages only from a parsed message), within the mail's MIME limits — past
them only its header is returned, as ``text/rfc822-headers``.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

from mailet_mta.api import GenericMailet, Mail, MimeLimitError

POLICY = email.policy.SMTP
DEFAULT_LIMIT = 50000            # Postfix's bounce_size_limit


def size_limit_parameter(mailet: GenericMailet) -> int:
    """The mailet's ``bounceSizeLimit`` parameter (octets, ≥ 1; default 50000)."""
    limit = mailet.get_size("bounceSizeLimit", DEFAULT_LIMIT) or 0
    if limit < 1:
        mailet.fail(f"bounceSizeLimit must be 1 or more octets, not {limit}")
    return limit


def original_head(mail: Mail, limit: int) -> bytes:
    """The original's header block without its empty line, at most ``limit`` octets."""
    block = mail.header_block()[:limit]
    for end in (b"\r\n\r\n", b"\n\n"):
        if block.endswith(end):
            return block[:-len(end) // 2]
    return block


def _start_of(mail: Mail, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` octets of the original, cut after a line end; and whether
    anything was cut."""
    with mail.open_message() as f:
        data = f.read(limit + 1)
    if len(data) <= limit:
        return data, False
    data = data[:limit]
    end = data.rfind(b"\n")
    return (data[:end + 1] if end >= 0 else data), True


def headers_part(mail: Mail, limit: int) -> EmailMessage:
    """The original's header block as a ``text/rfc822-headers`` part."""
    part = EmailMessage(policy=POLICY)
    part.set_content(original_head(mail, limit), maintype="text",
                     subtype="rfc822-headers", cte="8bit")
    del part["MIME-Version"]
    return part


def original_part(mail: Mail, limit: int) -> tuple[EmailMessage, str | None]:
    """A ``message/rfc822`` part with at most ``limit`` octets of the original (or its
    header when it cannot be attached within the MIME limits); and, when the original
    is not returned whole, a line saying so for the notice's text."""
    data, cut = _start_of(mail, limit)
    note = (f"The original message was {mail.size} octets; only its first {limit} "
            f"octets are returned.") if cut else None
    part = EmailMessage(policy=POLICY)
    if data.isascii():
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        part.set_content(data, maintype="message", subtype="rfc822", cte="7bit")
    else:
        try:
            part.set_content(_parsed(mail, data))
        except MimeLimitError as exc:
            return headers_part(mail, limit), (f"The original message cannot be attached "
                                               f"({exc}); only its header is returned.")
    del part["MIME-Version"]
    return part, note


def _parsed(mail: Mail, data: bytes) -> EmailMessage:
    """``data`` parsed within the MIME limits of ``mail``."""
    copy = Mail(message=data)
    copy.mime_limits = mail.mime_limits
    return copy.message
