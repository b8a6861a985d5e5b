"""Small matchers and mailets for engine tests, loaded by dotted path like a user's."""

from __future__ import annotations

from twisted.internet import defer, task

from mailet_mta.api import GenericMailet, GenericMatcher, GenericRecipientMatcher

SEEN: list[tuple[str, str, list[str], str]] = []   # (label, mail name, recipients, state)


def reset():
    SEEN.clear()


class Record(GenericMailet):
    """Records that it saw a mail; parameter ``label``."""

    def service(self, mail):
        SEEN.append((self.get_init_parameter("label", "record"), mail.name,
                     sorted(str(r) for r in mail.recipients), mail.state))


class GoTo(GenericMailet):
    """Sets the state to parameter ``processor``."""

    def required_processors(self):
        return [self.get_init_parameter("processor")]

    def service(self, mail):
        mail.state = self.get_init_parameter("processor")


class Drop(GenericMailet):
    def service(self, mail):
        mail.state = "ghost"


class Boom(GenericMailet):
    def service(self, mail):
        raise RuntimeError("boom")


class LaterBoom(GenericMailet):
    """Awaits a Deferred that fails on a later reactor turn."""

    async def service(self, mail):
        from twisted.internet import reactor

        def fail():
            raise ValueError("later boom")

        await task.deferLater(reactor, 0, fail)


class AddHeader(GenericMailet):
    def service(self, mail):
        mail.message["X-Seen"] = self.get_init_parameter("value", "yes")


class DeferredRecord(GenericMailet):
    """Answers with a Deferred that fires on the next reactor turn."""

    def service(self, mail):
        from twisted.internet import reactor

        return task.deferLater(reactor, 0, Record.service, self, mail)


class CoroutineRecord(GenericMailet):
    async def service(self, mail):
        from twisted.internet import reactor

        await task.deferLater(reactor, 0, lambda: None)
        Record.service(self, mail)


class LocalPartStartsWith(GenericRecipientMatcher):
    """Matches recipients whose local part starts with the condition."""

    def match_recipient(self, recipient):
        return recipient.local_part.startswith(self.condition)


class AsyncAll(GenericMatcher):
    def match(self, mail):
        return defer.succeed(list(mail.recipients))


class BadMatcher(GenericMatcher):
    def match(self, mail):
        raise ValueError("bad matcher")


class StrictParams(GenericMailet):
    parameters = ("known",)

    def service(self, mail):
        pass


class KeepIn(GenericMailet):
    """Stores the mail in repository ``repository`` through the context, then ghosts it."""

    def service(self, mail):
        d = self.context.store_in_repository(self.get_init_parameter("repository"), mail)
        mail.state = "ghost"
        return d


class Resend(GenericMailet):
    """Spools a copy for the same recipients into processor ``processor``; ghosts."""

    def service(self, mail):
        copy = mail.duplicate()
        self.context.send_mail(copy, self.get_init_parameter("processor"))
        mail.state = "ghost"


FLAKY_FAILS: dict[str, int] = {}


class Flaky(GenericMailet):
    """Raises for the first ``fails`` runs of each mail (by name)."""

    def service(self, mail):
        n = FLAKY_FAILS.get(mail.name, 0)
        if n < int(self.get_init_parameter("fails", "1")):
            FLAKY_FAILS[mail.name] = n + 1
            raise RuntimeError("temporary trouble")


HELD: dict[str, defer.Deferred] = {}   # mail name → the Deferred its run waits on


class Hold(GenericMailet):
    """Waits until the test fires ``HELD[mail.name]`` (runs that finish together)."""

    def service(self, mail):
        d = HELD[mail.name] = defer.Deferred()
        return d


class StoreIn(GenericMailet):
    """Stores the mail in mailbox ``user``'s folder ``folder`` (or the folder named
    by the mail's attribute ``folder``) through the context, then ghosts it."""

    def service(self, mail):
        folder = mail.get_attribute("folder") or self.get_init_parameter("folder", "INBOX")
        d = self.context.store_in_mailbox(self.get_init_parameter("user"), mail, folder)
        mail.state = "ghost"
        return d
