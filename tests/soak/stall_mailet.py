"""A mailet that never finishes: holds a mail mid-pipeline so a test can SIGKILL the
server while the mail is leased by a running process (loaded by dotted path)."""

from __future__ import annotations

from twisted.internet import defer

from mailet_mta.api import GenericMailet


class Stall(GenericMailet):
    """Returns a Deferred that never fires."""

    def service(self, mail):
        return defer.Deferred()
