"""``ToProcessor``: move the mail to another processor."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail


class ToProcessor(GenericMailet):
    """Moves the mail to the processor named by ``processor``.

    Parameters:

    - ``processor`` (required): the processor's name, e.g. ``transport``.
    - ``notice``: text stored as the mail's error message (bounces quote it), e.g.
      ``550 - Requested action not taken: no such user here``.
    """

    info = "moves the mail to another processor"
    parameters = ("processor", "notice")

    def init_mailet(self) -> None:
        self.processor = str(self.get_required("processor")).strip()
        if self.processor == "ghost":
            self.fail("processor 'ghost' is not a processor; use the Null mailet to "
                       "drop mails")
        self.notice = self.get_init_parameter("notice")

    def required_processors(self) -> list[str]:
        """The processors this mailet sends mail to (checked at start-up)."""
        return [self.processor]

    def service(self, mail: Mail) -> None:
        if self.notice is not None:
            mail.error_message = str(self.notice)
        mail.state = self.processor
