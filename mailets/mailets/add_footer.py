"""``AddFooter``: append a text to every text body of the message.

The footer goes at the end of each ``text/plain`` part and, escaped as HTML, before
``</body>`` of each ``text/html`` part — whether the message is a single part or
multipart (alternatives, mixed, nested). Attachments, even text ones, and non-text
parts are left alone; so is a message without any text body. The stdlib ``email``
package re-encodes each changed part in its original charset when the footer fits in
it, in UTF-8 otherwise.

The parse, the edits and the new message's serialisation run on a mailet worker
thread. A message past the MIME limits (``spoolmanager.maxMimeParts`` /
``maxMimeDepth``) is left unchanged, with a warning naming the limit.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from email.message import MIMEPart

from mailet_mta.api import GenericMailet, Mail, MimeLimitError

from ..matchers.attachments import is_attachment

_BODY_END = re.compile(r"</body\s*>", re.I)
# Content headers set_content() rebuilds; the others are restored after it.
_REBUILT = {"content-type", "content-transfer-encoding"}


def footer_html(text: str) -> str:
    """The footer as an HTML fragment: escaped, line breaks kept."""
    return "<br />" + html.escape(text).replace("\r\n", "\n").replace("\n", "<br />\n")


def add_to_plain(content: str, footer: str) -> str:
    newline = "\r\n" if "\r\n" in content else "\n"
    if content and not content.endswith(("\n", "\r")):
        content += newline
    return content + footer.replace("\r\n", "\n").replace("\n", newline) + newline


def add_to_html(content: str, footer: str) -> str:
    fragment = footer_html(footer)
    ends = list(_BODY_END.finditer(content))
    if ends:
        at = ends[-1].start()
        return content[:at] + fragment + "\n" + content[at:]
    return content + fragment


def text_bodies(part: MIMEPart) -> Iterator[MIMEPart]:
    """The text/plain and text/html body parts, not descending into attached messages."""
    maintype = part.get_content_maintype()
    if maintype == "multipart":
        for sub in part.iter_parts():
            yield from text_bodies(sub)
    elif maintype == "text" and part.get_content_subtype() in ("plain", "html") \
            and not is_attachment(part):
        yield part


def _transfer_encoding(original: str | None, text: str) -> str:
    """Keep quoted-printable/base64 and 8bit; 7-bit text that gained non-ASCII
    characters becomes quoted-printable (never raw 8-bit where there was none)."""
    original = str(original or "7bit").strip().lower()
    if original in ("quoted-printable", "base64", "8bit"):
        return original
    return "7bit" if text.isascii() else "quoted-printable"


def _replace_text(part: MIMEPart, text: str, is_root: bool) -> None:
    """Replace the text of ``part`` keeping its content headers and parameters."""
    subtype = part.get_content_subtype()
    charset = part.get_content_charset() or "utf-8"
    params = {k: v for k, v in (part.get_params(header="content-type") or [])[1:]
              if k.lower() != "charset"}
    kept = [(k, v) for k, v in part.items()
            if k.lower().startswith("content-") and k.lower() not in _REBUILT]
    try:
        text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        charset = "utf-8"
    had_version = "MIME-Version" in part
    part.set_content(text, subtype=subtype, charset=charset, params=params,
                     cte=_transfer_encoding(part.get("Content-Transfer-Encoding"), text))
    if not had_version and not is_root:     # set_content adds it; body parts need none
        del part["MIME-Version"]
    for name, value in kept:
        if name not in part:
            part[name] = value


class AddFooter(GenericMailet):
    """Appends ``text`` to the message's text bodies (plain and HTML).

    Parameters: ``text`` (required): the footer; new lines are kept.
    """

    info = "appends a footer to the message's text"
    parameters = ("text",)

    def init_mailet(self) -> None:
        self.text = str(self.get_required("text"))

    async def service(self, mail: Mail) -> None:
        for warning in await self.context.run_in_worker(self.add_footer, mail):
            self.log.warn("AddFooter: mail {mail_name}: {warning}", mail_name=mail.name,
                          warning=warning)

    def add_footer(self, mail: Mail) -> list[str]:
        """Add the footer to ``mail`` and serialise it (worker thread: no logging);
        returns the warnings to log."""
        try:
            message = mail.message
        except MimeLimitError as exc:
            return [f"{exc}; no footer added"]
        warnings = []
        for part in list(text_bodies(message)):
            subtype = part.get_content_subtype()
            try:
                content = part.get_content()
            except (LookupError, UnicodeError, AssertionError) as exc:
                warnings.append(f"a text/{subtype} part cannot be decoded ({exc}); "
                                f"left unchanged")
                continue
            new = add_to_plain(content, self.text) if subtype == "plain" \
                else add_to_html(content, self.text)
            try:
                _replace_text(part, new, part is message)
            except (ValueError, TypeError, AttributeError, LookupError) as exc:
                # The stdlib cannot rebuild some malformed parts (e.g. "From: :;");
                # the mail goes on unchanged rather than to the error processor.
                warnings.append(f"a text/{subtype} part cannot be rebuilt ({exc!r}); "
                                f"left unchanged")
        mail.message_bytes()            # serialise here, not on the reactor
        return warnings
