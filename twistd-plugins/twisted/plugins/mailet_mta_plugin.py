"""twistd plugin: ``twistd -n mailet-mta --config FILE`` runs the same server as
``mailet-mta serve``. This folder must never hold an ``__init__.py``."""

from twisted.application.service import ServiceMaker

mailet_mta = ServiceMaker(
    "mailet-mta",
    "mailet_mta.twistd",
    "A mail server with a James-style matcher/mailet pipeline (SMTP, POP3, relay).",
    "mailet-mta",
)
