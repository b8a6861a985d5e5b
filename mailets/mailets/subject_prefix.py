"""``AddSubjectPrefix``: put a tag such as ``[robot]`` in front of the Subject."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail


class AddSubjectPrefix(GenericMailet):
    """Prefixes the message's Subject with ``subjectPrefix`` and a space (James's
    ``AddSubjectPrefix``); a message without a Subject gets the prefix as its Subject.

    Parameter: ``subjectPrefix`` (required, one line). The new Subject is written as
    UTF-8 encoded words when it is not ASCII.
    """

    info = "adds a prefix to the Subject"
    parameters = ("subjectPrefix",)

    def init_mailet(self) -> None:
        self.prefix = str(self.get_required("subjectPrefix")).strip()
        if "\r" in self.prefix or "\n" in self.prefix:
            self.fail("subjectPrefix must be one line (no line breaks)")

    def service(self, mail: Mail) -> None:
        message = mail.message
        current = message.get("Subject")
        subject = self.prefix if current is None else \
            f"{self.prefix} {' '.join(str(current).splitlines())}"
        del message["Subject"]
        message["Subject"] = subject
