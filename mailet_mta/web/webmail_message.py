"""What the web mail does with message bytes: read, sanitise, search, compose.

Every function here is CPU work on one message (the stdlib ``email`` package parses
and builds every MIME structure) and runs on a worker thread, never on the reactor.
HTML parts are cleaned by ammonia through ``nh3`` (an allow-list sanitiser, maintained,
no parser of our own): no script, no event handler attributes, no forms, frames,
objects or styles; links open a new tab (``target="_blank"``, allowed out of the
sandboxed frame) with ``rel="noopener noreferrer"``; images keep a remote
``src`` only when the user asked to show images (``data:`` images always stay).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import html
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

import nh3

MAX_PARTS = 200            # MIME parts of one message looked at
MAX_TEXT = 2 * 1024 * 1024  # characters of one text body shown

# ammonia's default tags minus what a mail has no use for; no attribute runs script.
ALLOWED_TAGS = (nh3.ALLOWED_TAGS - {"area", "map"}) | {"font", "center"}
ALLOWED_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "img": {"src", "alt", "width", "height", "title"},
    "font": {"color", "size", "face"},
    "td": {"colspan", "rowspan", "align", "valign", "width"},
    "th": {"colspan", "rowspan", "align", "valign", "width"},
    "table": {"width", "border", "cellpadding", "cellspacing", "align"},
}
URL_SCHEMES = {"http", "https", "mailto", "data", "cid"}


@dataclass
class Attachment:
    """One part shown as a download."""

    index: int            # its position in the walk of the message's parts
    filename: str
    content_type: str
    size: int


@dataclass
class ReadMessage:
    """One message as the reading page shows it."""

    subject: str = ""
    sender: str = ""
    to: str = ""
    cc: str = ""
    date: str = ""
    message_id: str = ""
    references: str = ""
    reply_to: str = ""
    text: str | None = None
    html: str | None = None
    remote_images: bool = False
    attachments: list[Attachment] = field(default_factory=list)


def parse(data: bytes) -> Message:
    """The message as a stdlib tree (never raises on malformed input)."""
    return email.message_from_bytes(data, policy=email.policy.default)


def header_text(msg: Message, name: str, limit: int = 2000) -> str:
    """A header field decoded to text (RFC 2047), or "" when absent or broken."""
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError, LookupError):
        value = msg.get_all(name, [""])[0] if msg.get_all(name) else ""
    return " ".join(str(value or "").split())[:limit]


def summary(header_block: bytes) -> dict:
    """Subject, From, To and Date of a header block (the list page)."""
    msg = email.message_from_bytes(header_block, policy=email.policy.default)
    return {name: header_text(msg, name, 300) for name in ("subject", "from", "to", "date")}


def _parts(msg: Message):
    for index, part in enumerate(msg.walk()):
        if index >= MAX_PARTS:
            return
        yield index, part


def _filename(part: Message) -> str | None:
    try:
        return part.get_filename()
    except (ValueError, IndexError, TypeError, LookupError):
        return "attachment"


def _content(part: Message) -> str:
    try:
        return part.get_content()
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def read(data: bytes, show_images: bool = False) -> ReadMessage:
    """The reading view of a message: the first text/plain and text/html bodies that
    are not attachments, the HTML sanitised, and the list of attachments."""
    msg = parse(data)
    out = ReadMessage(**{key: header_text(msg, name) for key, name in (
        ("subject", "subject"), ("sender", "from"), ("to", "to"), ("cc", "cc"),
        ("date", "date"), ("message_id", "message-id"), ("references", "references"),
        ("reply_to", "reply-to"))})
    for index, part in _parts(msg):
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = _filename(part)
        if disposition != "attachment" and not filename and kind == "text/plain" \
                and out.text is None:
            out.text = _content(part)[:MAX_TEXT]
        elif disposition != "attachment" and not filename and kind == "text/html" \
                and out.html is None:
            out.html, out.remote_images = sanitise(_content(part)[:MAX_TEXT], show_images)
        elif index > 0 and (filename or disposition == "attachment"
                            or not kind.startswith("text/")):
            payload = part.get_payload(decode=True) or b""
            out.attachments.append(Attachment(index, filename or f"part-{index}",
                                              kind, len(payload)))
    return out


def sanitise(text: str, show_images: bool) -> tuple[str, bool]:
    """(clean HTML, whether remote images were held back)."""
    held = []

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            if value.lower().startswith("data:image/"):
                return value
            if value.lower().startswith(("http:", "https:", "//")):
                if show_images:
                    return value
                held.append(value)
            return None
        return value

    clean = nh3.clean(text, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                      url_schemes=URL_SCHEMES, attribute_filter=keep,
                      link_rel="noopener noreferrer", strip_comments=True,
                      set_tag_attribute_values={"a": {"target": "_blank"}})
    return clean, bool(held)


def attachment(data: bytes, index: int) -> tuple[str, bytes] | None:
    """(file name, decoded bytes) of the part at ``index`` of the walk, or None."""
    msg = parse(data)
    for i, part in _parts(msg):
        if i == index and i > 0 and not part.is_multipart():
            return _filename(part) or f"part-{index}", part.get_payload(decode=True) or b""
    return None


def matches(data: bytes, query: str, where: str) -> bool:
    """Whether a message holds ``query`` (case-insensitive) in its subject, its From,
    or its text ("subject", "from", "body"; "all" is any of them)."""
    msg = parse(data)
    needle = query.casefold()
    if where in ("subject", "all") and needle in header_text(msg, "subject").casefold():
        return True
    if where in ("from", "all") and needle in header_text(msg, "from").casefold():
        return True
    if where in ("body", "all"):
        for _index, part in _parts(msg):
            if part.get_content_type() in ("text/plain", "text/html") \
                    and not part.is_multipart() and needle in _content(part).casefold():
                return True
    return False


@dataclass
class Draft:
    """A message the user composed."""

    sender: str
    to: list[str]
    cc: list[str]
    subject: str
    body: str
    in_reply_to: str = ""
    references: str = ""
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # name, type, data
    forwarded: bytes | None = None
    domain: str = "localhost"


def build(draft: Draft) -> bytes:
    """The RFC 5322 message of a draft, CRLF line ends."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = draft.sender
    if draft.to:
        msg["To"] = ", ".join(draft.to)
    if draft.cc:
        msg["Cc"] = ", ".join(draft.cc)
    msg["Subject"] = draft.subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=draft.domain)
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
        msg["References"] = " ".join((draft.references + " " + draft.in_reply_to).split()[-20:])
    msg["User-Agent"] = "mailet-mta webmail"
    msg.set_content(draft.body)
    for name, kind, data in draft.attachments:
        maintype, _, subtype = kind.partition("/")
        if not subtype or not maintype.isalpha():
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    if draft.forwarded is not None:
        msg.add_attachment(parse(draft.forwarded), filename="forwarded.eml")
    return msg.as_bytes()


def quoted(message: ReadMessage) -> str:
    """The text of a message quoted for a reply."""
    body = message.text if message.text is not None else _html_as_text(message.html or "")
    lines = body.splitlines()[:2000]
    return f"\n\nOn {message.date}, {message.sender} wrote:\n" + "\n".join(
        "> " + line for line in lines)


def _html_as_text(text: str) -> str:
    return html.unescape(nh3.clean(text, tags=set()))


def addresses(text: str, limit: int = 100) -> list[str]:
    """The addresses of a To/Cc field (``a@x, "B" <b@y>``), at most ``limit``;
    ValueError for one that is not an address."""
    found = [addr for _name, addr in email.utils.getaddresses([text]) if addr]
    if len(found) > limit:
        raise ValueError(f"at most {limit} recipients")
    for addr in found:
        if "@" not in addr or any(c.isspace() or c in "<>,;" for c in addr):
            raise ValueError(f"{addr!r} is not an address")
    return found


def addresses_quiet(text: str, limit: int = 100) -> list[str]:
    """The addresses of a header value, skipping what is not one."""
    return [addr for _name, addr in email.utils.getaddresses([text]) if "@" in addr][:limit]
