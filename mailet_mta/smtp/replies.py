"""SMTP replies: formatting, and where each RFC 821/5321 reply code comes from.

Every reply carries an RFC 3463 enhanced status code (ENHANCEDSTATUSCODES, RFC 2034),
except the greeting and the 354 intermediate reply as RFC 2034 §3 allows.

====  =======================================================================
code  produced by (tests: ``tests/unit/test_smtp_codes.py::test_<code>_...``)
====  =======================================================================
211   not produced: there is no system status command (HELP answers 214).
214   HELP (``214 2.0.0`` with the command list or a topic).
220   the greeting; ``220 2.0.0 Ready to start TLS`` after STARTTLS.
221   QUIT (``221 2.0.0 Bye``).
250   EHLO/HELO, MAIL, RCPT, RSET, NOOP, VRFY of a local user (enable_vrfy), a
      BDAT chunk, and the end of DATA / BDAT LAST once the mail is durable.
251   RCPT of a local user the backend forwards (``redirect_of`` → "forward").
354   DATA (``354 End data with <CR><LF>.<CR><LF>``).
421   idle timeout (4.4.2), too many connections in total or from one IP
      (4.7.0), shutdown (4.3.2); the connection is then closed.
450   RCPT when the backend cannot check the mailbox now (``is_local_address`` or
      ``quota_ok`` raised: 4.3.0 / 4.2.1).
451   end of DATA/BDAT when the spool could not take the mail (4.3.0).
452   RCPT beyond max_recipients (4.5.3).
454   STARTTLS without a certificate (4.7.0) (RFC 3207).
500   unknown command, empty line (5.5.2); line too long (5.5.2).
501   syntax errors in arguments (5.5.4), bad base64 / cancelled AUTH (5.5.2 /
      5.0.0), missing HELO argument.
502   EXPN, SEND, SOML, SAML, TURN (5.5.1).
503   bad sequence (5.5.1): RCPT before MAIL, nested MAIL, DATA before RCPT, MAIL
      before HELO (helo_required), AUTH twice or inside a transaction, DATA mixed
      with BDAT, AUTH when it is not offered.
504   AUTH with an unknown mechanism (5.5.4).
530   MAIL before AUTH on a submission listener (5.7.0); RCPT relay when AUTH is
      offered to this client (5.7.1); unauthenticated local sender (strict).
535   AUTH with wrong credentials (5.7.8).
538   AUTH before TLS when require_ssl (5.7.11).
550   unknown local user (5.1.1), relay denied (5.7.1), bare CR/LF in DATA (5.6.11).
551   RCPT of a local user that moved (``redirect_of`` → "moved", 5.1.6).
552   declared SIZE over the limit at MAIL, or real size at end of data (5.3.4);
      quota at RCPT (5.2.2).
553   malformed sender/recipient address (5.1.7 / 5.1.3), MAIL FROM not owned by
      the authenticated user (5.7.1), UTF-8 address without SMTPUTF8 (5.6.7).
554   DATA/BDAT with no valid recipients (5.5.1).
555   MAIL/RCPT parameter not recognised (5.5.4) (RFC 5321 §4.1.1.11).
====  =======================================================================
"""

from __future__ import annotations

import re

# Reply text is printable US-ASCII (RFC 5321 §4.2): client-supplied text echoed in a
# reply (an EHLO name, an address) must not smuggle CR, ESC or UTF-8 into the reply.
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
MAX_REPLY_LINE = 512       # RFC 5321 §4.5.3.1.5, CRLF included


def format_reply(code: int, enhanced: str | None, text: str | list[str]) -> bytes:
    """One reply, possibly multi-line, as wire bytes (CRLF line ends).

    ``enhanced`` (``"2.0.0"``) is put in front of every line's text when given.
    """
    lines = text if isinstance(text, list) else [text]
    out = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        sep = " " if i == last else "-"
        body = _UNPRINTABLE.sub("?", f"{enhanced} {line}" if enhanced else line)
        out.append(f"{code}{sep}{body[:MAX_REPLY_LINE - 6]}\r\n")
    return "".join(out).encode("ascii")
