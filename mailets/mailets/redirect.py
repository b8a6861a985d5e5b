"""``Redirect``: re-send the mail, changed, to configured recipients.

A practical subset of James's Redirect: the parameters below, with James's names and
special words. The new mail starts in the ``root`` processor with the ``SentByMailet``
mark; the original ends unless ``passThrough`` is true.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
from email.message import EmailMessage, Message

from mailet_mta.api import GenericMailet, Mail, MailAddress, MailAddressError

from ..address_lists import parse_addresses, split_list
from ..awaiting import settled
from .forward import resend_copy

INLINE = ("unaltered", "heads", "body", "all", "message", "none")
ATTACH = ("none", "heads", "body", "all", "message")
SPECIALS = ("sender", "postmaster", "from", "replyto", "unaltered", "recipients")


def raw_headers(message: Message, name: str) -> list[str]:
    """The values of the headers ``name`` as written (unfolded to one line each),
    without the email package's parsing, which raises on some malformed values."""
    return [_text(v) for k, v in message.raw_items() if k.lower() == name.lower()]


def _text(value: object) -> str:
    """A raw header value as one line of text: 8-bit bytes decoded as UTF-8 where they
    are UTF-8, the rest replaced (U+FFFD), so the value can be written out again."""
    raw = str(value).encode("utf-8", "surrogateescape")
    return _one_line(raw.decode("utf-8", "replace"))


def header_addresses(message: Message, name: str) -> list[MailAddress]:
    found = []
    for _, addr in email.utils.getaddresses(raw_headers(message, name)):
        try:
            found.append(MailAddress.parse(addr))
        except MailAddressError:
            continue
    return found


class Redirect(GenericMailet):
    """Re-sends the message to other recipients, optionally rewritten.

    Parameters:

    - ``recipients``: envelope recipients; addresses and the words ``sender``,
      ``postmaster``, ``from`` (From: header), ``replyTo`` (Reply-To:, else From:),
      ``unaltered`` (the mail's recipients). Defaults to the ``to`` addresses.
    - ``to``: the To: header, with the same words; ``unaltered`` (the default) keeps it.
    - ``sender``: one address (or ``postmaster``, ``sender``) for the From: header and
      the envelope sender.
    - ``reversePath``: the envelope sender only: an address, ``postmaster``, ``sender``
      or ``null`` (``<>``). Defaults to ``sender`` when that is set.
    - ``subject``: replaces the Subject; ``prefix``: put before it (``[fwd]``).
    - ``inline``: what the new body holds: ``unaltered`` (default: the original message
      itself), ``heads``, ``body``, ``all`` (heads and body), ``message`` (the raw
      original) or ``none``; ``message``: a text put first in a rebuilt body.
    - ``attachment``: ``none`` (default), ``heads``, ``body``, ``all`` (as text parts) or
      ``message`` (the original as ``message/rfc822``).
    - ``passThrough`` (default false): true lets the original continue as well.

    At least one of ``recipients`` and ``to`` is required.
    """

    info = "re-sends the mail to configured recipients"
    parameters: tuple[str, ...] = ("recipients", "to", "sender", "reversePath", "subject", "prefix",
                  "inline", "attachment", "message", "passThrough")

    def init_mailet(self) -> None:
        self.recipients = self._address_words("recipients")
        self.to = self._address_words("to")
        if not self.recipients and not self.to:
            self.fail("needs 'recipients' or 'to' (addresses or sender, postmaster, …)")
        self.sender = self._single("sender", ("postmaster", "sender", "unaltered"))
        self.reverse_path = self._single("reversePath",
                                         ("postmaster", "sender", "null", "unaltered"))
        self.subject = self.get_init_parameter("subject")
        self.prefix = self.get_init_parameter("prefix")
        self.inline = self._choice("inline", INLINE, "unaltered")
        self.attachment = self._choice("attachment", ATTACH, "none")
        self.message_text = self.get_init_parameter("message")
        self.pass_through = self.get_bool("passThrough", False)

    # -- configuration ----------------------------------------------------------------
    def _address_words(self, name: str) -> list[str | MailAddress]:
        result: list[str | MailAddress] = []
        for item in split_list(self.get_init_parameter(name)):
            if item.lower() in SPECIALS:
                result.append(item.lower())
                continue
            try:
                result.extend(parse_addresses([item], name))
            except ValueError as exc:
                self.fail(f"{exc}; or use one of {', '.join(SPECIALS)}")
        return result

    def _single(self, name: str, words: tuple[str, ...]) -> str | MailAddress | None:
        value = self.get_init_parameter(name)
        if value is None:
            return None
        text = str(value).strip()
        if text.lower() in words:
            return text.lower()
        try:
            return MailAddress.parse(text)
        except MailAddressError as exc:
            self.fail(f"{name} {text!r} is not an address or one of "
                       f"{', '.join(words)} ({exc})")

    def _choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = str(self.get_init_parameter(name, default)).strip().lower()
        if value not in allowed:
            self.fail(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    # -- per mail ---------------------------------------------------------------------
    def _resolve(self, items: list[str | MailAddress], mail: Mail) -> list[MailAddress]:
        found: list[MailAddress] = []
        for item in items:
            if item == "sender":
                new = [mail.sender] if mail.sender is not None else []
            elif item == "postmaster":
                new = [self.context.postmaster]
            elif item == "from":
                new = header_addresses(mail.headers(), "From")
            elif item == "replyto":
                new = header_addresses(mail.headers(), "Reply-To") \
                    or header_addresses(mail.headers(), "From")
            elif item in ("unaltered", "recipients"):
                new = list(mail.recipients)
            else:
                new = [item] if isinstance(item, MailAddress) else []
            found.extend(a for a in new if a not in found)
        return found

    def _envelope_sender(self, mail: Mail) -> MailAddress | None:
        choice = self.reverse_path if self.reverse_path is not None else self.sender
        if choice is None or choice in ("unaltered", "sender"):
            return mail.sender
        if choice == "null":
            return None
        if choice == "postmaster":
            return self.context.postmaster  # type: ignore[no-any-return]
        return choice if isinstance(choice, MailAddress) else None

    async def service(self, mail: Mail) -> None:
        recipients = self._resolve(self.recipients or self.to, mail)
        if recipients:
            copy = await self.context.run_in_worker(self.prepared_copy, mail, recipients)
            await settled(resend_copy(self, copy, recipients, sender=copy.sender))
        else:
            self.log.warn("Redirect: mail {mail_name}: no recipient to redirect to",
                          mail_name=mail.name)
        if not self.pass_through:
            mail.state = Mail.GHOST

    def prepared_copy(self, mail: Mail, recipients: list[MailAddress]) -> Mail:
        """The copy to re-send, built and serialised (on a mailet worker thread: the
        rebuild parses the message, within its MIME limits — past them it raises
        MimeLimitError and the mail goes where ``onMailetException`` says)."""
        copy = mail.duplicate()
        copy.recipients = recipients
        copy.sender = self._envelope_sender(mail)
        if not (self.inline == "unaltered" and self.attachment == "none"):
            copy.message = self._rebuilt(mail)
        self._edit_headers(copy, mail)
        copy.message_bytes()
        return copy

    def _edit_headers(self, copy: Mail, original: Mail) -> None:
        """Header edits on the copy; an unaltered message is not parsed for them."""
        if self.to and self.to != ["unaltered"]:
            copy.remove_headers(["to"])
            copy.add_header("To", ", ".join(str(a) for a in self._resolve(self.to, original)))
        if self.sender is not None and self.sender not in ("unaltered", "sender"):
            from_ = self.context.postmaster if self.sender == "postmaster" else self.sender
            copy.remove_headers(["from"])
            copy.add_header("From", str(from_))
        if self.subject is not None or self.prefix:
            subject = str(self.subject) if self.subject is not None \
                else _one_line(copy.headers().get("Subject", ""))
            if self.prefix:
                subject = f"{str(self.prefix).strip()} {subject}".strip()
            copy.remove_headers(["subject"])
            copy.add_header("Subject", subject)

    def message_for(self, mail: Mail) -> str | None:
        """The text put first in a rebuilt body (the ``message`` parameter here)."""
        return str(self.message_text) if self.message_text is not None else None

    def _rebuilt(self, mail: Mail) -> EmailMessage:
        """A new message: the text and inline content, then the attachment."""
        original = mail.message
        heads = "".join(f"{k}: {_text(v)}\n" for k, v in original.raw_items())
        body_part = original.get_body(preferencelist=("plain",))
        try:
            body = body_part.get_content() if body_part is not None else ""
        except (LookupError, UnicodeError):
            body = ""
        raw = mail.message_bytes().decode("utf-8", "replace")
        inline = {"heads": heads, "body": body, "all": heads + "\n" + body,
                  "message": raw, "none": "", "unaltered": body}[self.inline]
        message_text = self.message_for(mail)
        text = (str(message_text) + "\n\n" if message_text else "") + inline
        new = EmailMessage()
        for name in ("From", "To", "Cc", "Reply-To", "Subject", "Date"):
            values = raw_headers(original, name)
            if values:      # RFC 5322 §3.6 allows one each; a message with two keeps the first
                try:
                    new[name] = _one_line(values[0])
                except (IndexError, ValueError, TypeError):
                    continue    # a header the email package cannot parse is left out
        new["Message-ID"] = email.utils.make_msgid(
            domain=str(self.context.server_name or "localhost"))
        new.set_content(text or "\n")
        if self.attachment == "message":
            _attach_original(new, mail.message_bytes())
        elif self.attachment != "none":
            content = {"heads": heads, "body": body, "all": heads + "\n" + body}[self.attachment]
            new.add_attachment(content, filename=f"{self.attachment}.txt")
        return new


def _attach_original(new: EmailMessage, raw: bytes) -> None:
    """The original as a ``message/rfc822`` part; a message the email package cannot
    write back (undecodable 8-bit bytes in a broken multipart) goes as an
    ``application/octet-stream`` file instead, byte for byte."""
    attached = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    try:
        attached.as_bytes()
    except (UnicodeError, LookupError, ValueError):
        new.add_attachment(raw, maintype="application", subtype="octet-stream",
                           filename="original.eml")
        return
    new.add_attachment(attached, filename="original.eml")


def _one_line(value: object) -> str:
    """A header value as one line: vertical tabs, form feeds and other line breaks
    that the parser let through would make the email package refuse the header."""
    return " ".join(str(value).splitlines())
