"""Message header edits: SetMimeHeader (add a header), RemoveMimeHeader (strip headers)."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail


class SetMimeHeader(GenericMailet):
    """Adds the header ``name: value`` to the message (existing ones are kept, as in
    James; remove them first with RemoveMimeHeader to replace a header). Only the
    header block is rewritten; the body is not parsed.

    Parameters: ``name`` (required), ``value`` (required).
    """

    info = "adds a header to the message"
    parameters = ("name", "value")

    def init_mailet(self) -> None:
        self.name = str(self.get_required("name")).strip()
        self.value = str(self.get_required("value"))
        if any(c.isspace() or c == ":" for c in self.name):
            self.fail(f"name {self.name!r} is not a header name")
        if "\r" in self.value or "\n" in self.value:
            self.fail("value must be one line (no line breaks)")

    def service(self, mail: Mail) -> None:
        mail.add_header(self.name, self.value)


class RemoveMimeHeader(GenericMailet):
    """Removes every occurrence of the named headers: ``name`` = ``Bcc`` or
    ``X-Spam-Status, X-Spam-Flag`` (comma list; case does not matter).

    The message is left untouched (byte for byte) when none of the headers is present;
    otherwise only its header block is rewritten, never the body (no MIME parse, so a
    message of any size or number of parts costs the same).
    """

    info = "removes headers from the message"
    parameters = ("name",)

    def init_mailet(self) -> None:
        self.names = self.get_list("name")
        if not self.names:
            self.fail("the parameter 'name' is required (one or more header names)")

    def service(self, mail: Mail) -> None:
        mail.remove_headers(self.names)
