"""Sending a user's message: through the server's own submission listener.

The web mail is one more mail client. It connects to the SMTP listener chosen by
``webmail.submission`` on its loopback address and logs in for the user with its
internal credential (SASL PLAIN, authzid = the user; see
:mod:`mailet_mta.webmail_credential`), so exactly what applies to a user of
Thunderbird applies here:
AUTH and its throttle, ``verifyIdentity`` on MAIL FROM, the relay policy, the size
limit, the ``Received:`` trace, then the spool and every processor and mailet
(DKIM signing included). A path of its own into the spool would have to repeat each of
those checks and drift from them. The SMTP client runs on a worker thread.
"""

from __future__ import annotations

import base64
import smtplib
import ssl

from ..webmail_credential import AUTHCID


class SendRefused(Exception):
    """The submission listener refused the message: ``reply`` says why."""


def loopback_of(host: str) -> str:
    """Where to connect for a listener bound to ``host`` (a wildcard is loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "::0"):
        return "::1"
    return host


def submit(host: str, port: int, implicit_tls: bool, starttls: bool, user: str,
           secret: str, sender: str, recipients: list[str], data: bytes,
           timeout: float = 60.0) -> dict:
    """Send ``data`` (on a worker thread). Returns the refused recipients ({address:
    (code, reply)}) when others were taken; raises :class:`SendRefused` otherwise."""
    # The listener is this server on loopback: its certificate is ours, not checked.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        if implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout,
                                                    context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            client.ehlo("webmail.localhost")
            if starttls and not implicit_tls and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo("webmail.localhost")
            token = f"{user}\0{AUTHCID}\0{secret}".encode()
            code, reply = client.docmd("AUTH", "PLAIN " + base64.b64encode(token).decode())
            if code != 235:
                raise smtplib.SMTPAuthenticationError(code, reply)
            return client.sendmail(sender, recipients, data)
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendRefused("no recipient was accepted: " + "; ".join(
            f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply)
            in exc.recipients.items())) from None
    except smtplib.SMTPResponseException as exc:
        raise SendRefused(f"the server answered {exc.smtp_code} "
                          f"{_text(exc.smtp_error)}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendRefused(f"the mail server could not be reached: {exc}") from None


def _text(reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
