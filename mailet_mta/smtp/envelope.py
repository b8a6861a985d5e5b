"""The state of one SMTP session and of the transaction in progress, and the Mail
built from them at the end of DATA / BDAT LAST."""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass, field

from ..address import MailAddress
from ..api import (
    ATTR_AUTH_NETWORK,
    ATTR_AUTH_USER,
    ATTR_BODY,
    ATTR_DSN_ENVID,
    ATTR_DSN_RCPT,
    ATTR_DSN_RET,
    ATTR_HELO,
    ATTR_REMOTE_ADDR,
    ATTR_SMTPUTF8,
    ATTR_TLS,
)
from ..mail import Mail, MessageSource, new_mail_name


@dataclass
class Session:
    """What is known about the client, kept across transactions (reset by STARTTLS)."""

    remote_ip: str
    local_ip: str
    authorized_network: bool
    tls: bool = False
    helo: str | None = None
    esmtp: bool = False
    auth_user: str | None = None


@dataclass
class Envelope:
    """One mail transaction: from MAIL to the end of DATA/BDAT LAST, or RSET."""

    sender: MailAddress | None
    name: str = field(default_factory=new_mail_name)
    recipients: list[MailAddress] = field(default_factory=list)
    rcpt_count: int = 0                 # RCPT commands accepted (repeats included)
    declared_size: int = 0
    body: str = "7BIT"
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    dsn_rcpt: dict[str, dict] = field(default_factory=dict)
    bdat_used: bool = False
    bdat_failed: tuple | None = None


def protocol_name(session: Session) -> str:
    """RFC 3848 ``with`` keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA (UTF8 forms
    are not used: RFC 6531 names are optional)."""
    if not session.esmtp:
        return "SMTP"
    return "ESMTP" + ("S" if session.tls else "") + ("A" if session.auth_user else "")


_UNSAFE = re.compile(r"[^\x21-\x7e]")


def _address_literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


_last_date: tuple[int, str] = (-1, "")


def _rfc5322_date(now: float | None) -> str:
    """``formatdate(now, localtime=True)``, computed once per second."""
    global _last_date
    second = int(time.time() if now is None else now)
    if _last_date[0] != second:
        _last_date = (second, email.utils.formatdate(second, localtime=True))
    return _last_date[1]


def received_header(session: Session, envelope: Envelope, server_name: str,
                    now: float | None = None) -> bytes:
    """The RFC 5321 §4.4 trace line prepended to every accepted message."""
    helo = _UNSAFE.sub("?", session.helo or "unknown")[:200]
    lines = [f"Received: from {helo} ({_address_literal(session.remote_ip)})",
             f"\tby {server_name} with {protocol_name(session)} id {envelope.name}"]
    date = _rfc5322_date(now)
    if len(envelope.recipients) == 1:
        lines.append(f"\tfor <{envelope.recipients[0]}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def build_mail(session: Session, envelope: Envelope, source: MessageSource) -> Mail:
    """The Mail handed to ``ISMTPBackend.accept``."""
    attrs = {
        ATTR_HELO: session.helo,
        ATTR_REMOTE_ADDR: session.remote_ip,
        ATTR_TLS: session.tls,
        ATTR_AUTH_NETWORK: session.authorized_network,
        ATTR_SMTPUTF8: envelope.smtputf8,
        ATTR_BODY: envelope.body,
    }
    if session.auth_user:
        attrs[ATTR_AUTH_USER] = session.auth_user
    if envelope.envid is not None:
        attrs[ATTR_DSN_ENVID] = envelope.envid
    if envelope.ret is not None:
        attrs[ATTR_DSN_RET] = envelope.ret
    if envelope.dsn_rcpt:
        attrs[ATTR_DSN_RCPT] = dict(envelope.dsn_rcpt)
    return Mail(envelope.name, sender=envelope.sender, recipients=envelope.recipients,
                message=source, attributes=attrs, remote_addr=session.remote_ip,
                remote_host=session.remote_ip, helo=session.helo,
                auth_user=session.auth_user)
