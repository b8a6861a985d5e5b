"""``LogMessage``: write the mail's headers and the start of its body to the log."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail

# The header block is read up to this many octets; a longer one is cut.
MAX_HEADER_OCTETS = 64 * 1024


def read_head_and_body(mail: Mail, max_body: int) -> tuple[bytes, bytes, bool]:
    """(header block, at most ``max_body`` octets of body, body was cut) — streaming,
    so a large message is never read whole."""
    with mail.open_message() as stream:
        data = stream.read(MAX_HEADER_OCTETS + max_body + 1)
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = data.find(sep)
        if end >= 0:
            head, body = data[:end], data[end + len(sep):]
            break
    else:
        head, body = data[:MAX_HEADER_OCTETS], b""
    cut = len(body) > max_body
    return head, body[:max_body], cut


class LogMessage(GenericMailet):
    """Logs the mail (through the context's logger, with the mail's name).

    Parameters:

    - ``headers`` (default true): log the header block.
    - ``body`` (default true): log the start of the body.
    - ``maxBody`` (default 4096; ``bodyMax`` also accepted): at most this many octets of
      body are logged; 0 logs none.
    - ``comment``: text logged first, e.g. to say where in the pipeline this is.
    - ``passThrough`` (default true): false drops the mail after logging.
    """

    info = "logs the message"
    parameters = ("headers", "body", "maxBody", "bodyMax", "comment", "passThrough")

    def init_mailet(self) -> None:
        self.log_headers = self.get_bool("headers", True)
        self.log_body = self.get_bool("body", True)
        max_body = self.get_size("maxBody", None)
        if max_body is None:
            max_body = self.get_size("bodyMax", 4096)
        self.max_body: int = max_body if max_body is not None else 4096
        if self.max_body < 0:
            self.fail("maxBody must be 0 or more")
        self.comment = self.get_init_parameter("comment")
        self.pass_through = self.get_bool("passThrough", True)

    def service(self, mail: Mail) -> None:
        max_body = self.max_body if self.log_body else 0
        head, body, cut = read_head_and_body(mail, max_body)
        lines = [f"mail {mail.name} from=<{mail.sender or ''}> "
                 f"to={','.join(str(r) for r in mail.recipients)} size={mail.size}"]
        if self.comment:
            lines.insert(0, str(self.comment))
        if self.log_headers:
            lines.append(head.decode("utf-8", "replace"))
        if self.log_body and max_body:
            lines.append(body.decode("utf-8", "replace")
                         + (f"\n[… body cut at {max_body} octets]" if cut else ""))
        self.log.info("{text}", text="\n".join(lines), mail_name=mail.name)
        if not self.pass_through:
            mail.state = Mail.GHOST
