"""``Null``: drop the mail."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail


class Null(GenericMailet):
    """Ends the mail's processing (state ``ghost``): nothing is delivered. No parameters."""

    info = "drops the mail"
    parameters = ()

    def service(self, mail: Mail) -> None:
        mail.state = Mail.GHOST
