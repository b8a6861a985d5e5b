"""The MailetContext: the one door through which mailets reach the server.

Writes (mailbox, repository, outgoing queue, new mails) join the unit of work of the
mail being processed, so they become durable together with the end of its run. Called
outside a run (a mailet's own timer, say), each write commits on its own.
"""

from __future__ import annotations

import email.utils
import time
from email.message import EmailMessage

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from .address import MailAddress
from .api import ATTR_SENT_BY_MAILET, ATTR_SMARTHOST, IMailetContext, Mail, TemporaryError
from .directory import Directory
from .logging_setup import log_kept, log_local_delivery
from .mail import MAIL_POLICY
from .spool import mailet_workers
from .spool.unit_of_work import UnitOfWork, current_uow
from .storage import repositories


@implementer(IMailetContext)
class MailetContext:
    """IMailetContext over the directory, the spool, storage and delivery."""

    def __init__(self, config, directory: Directory, blobs, *, intake=None, resolver=None,
                 outgoing=None):
        self.config = config
        self.directory = directory
        self.blobs = blobs
        self.intake = intake          # SpoolIntake: new mails, units of work committed alone
        self.resolver = resolver      # delivery resolver with mx_hosts(domain)
        self.outgoing = outgoing      # outgoing queue service with wake()
        self.server_name = config.server_name
        self.postmaster = MailAddress.parse(config.postmaster_address)
        self.log = Logger(namespace="mailet_mta.mailet")
        self._attributes = server_attributes(config)

    # -- lookups ------------------------------------------------------------------------
    def is_local_server(self, domain) -> bool:
        return self.directory.is_local_domain(str(domain))

    def is_local_user(self, name) -> bool:
        return self.directory.is_local_user(str(name))

    def is_local_email(self, address) -> bool:
        return self.directory.is_local_email(address)

    def local_users_of(self, address) -> list[str]:
        return self.directory.local_users_of(address)

    def lookup_mappings(self, address) -> list[str]:
        return self.directory.lookup_mappings(address)

    def get_attribute(self, name):
        return self._attributes.get(name)

    def mx_hosts(self, domain):
        if self.resolver is None:
            return defer.fail(RuntimeError("no DNS resolver is configured"))
        return self.resolver.mx_hosts(domain).addCallback(
            lambda hosts: [(pref, host) for pref, host, _port in hosts])

    def dns_lookup(self, name, rrtype="TXT"):
        from .delivery.resolver import DNSTemporaryError

        if self.resolver is None:
            return defer.fail(TemporaryError("no DNS resolver is configured"))

        def temporary(failure):
            failure.trap(DNSTemporaryError)
            raise TemporaryError(str(failure.value))

        return self.resolver.records(str(name), rrtype).addErrback(temporary)

    def run_in_worker(self, fn, *args, **kwargs):
        return mailet_workers.run_in_worker(fn, *args, **kwargs)

    # -- writes -------------------------------------------------------------------------
    def _write(self, fill, uow=None) -> defer.Deferred:
        """Run ``fill(uow)`` in the current run's unit of work, or commit it alone."""
        uow = uow if uow is not None else current_uow.get()
        if uow is not None:
            fill(uow)
            return defer.succeed(None)
        uow = UnitOfWork(self.blobs)
        fill(uow)
        return self.intake.commit(uow)

    def send_mail(self, mail: Mail, state: str = "root", delay: float = 0) -> defer.Deferred:
        mail.state = state
        mail.set_attribute(ATTR_SENT_BY_MAILET, True)
        return self._write(lambda uow: self.intake.spool_in(uow, mail, delay))

    def store_in_mailbox(self, user: str, mail: Mail, folder: str = "INBOX",
                         prefix_headers=()) -> defer.Deferred:
        """Store for ``user``; fails with QuotaExceeded (before anything is queued)
        when the user's quota cannot take the message."""
        from .folder_watch import changed_here
        from .storage.mailboxes import (
            check_quota,
            deliver_statement,
            format_prefix,
            store_message,
        )

        prefix = format_prefix(prefix_headers)
        user = user.lower()
        uow = current_uow.get()

        has_quota = user in self.directory.quotas
        pipelined = not (has_quota or self.intake.db.is_sqlite)

        def fill(uow):
            blob_id = uow.blob_id_for(mail)
            uow.add(store_message, user, folder, blob_id, prefix, mail.size,
                    flight=[deliver_statement(user, folder, blob_id, prefix, mail.size)]
                    if pipelined else None)
            uow.after_commit.append(lambda: log_local_delivery(user, mail, folder))
            uow.after_commit.append(lambda: changed_here(user))

        if not has_quota:
            return self._write(fill, uow)
        d = self.intake.db.read(check_quota, user, len(prefix) + mail.size)
        d.addCallback(lambda _: self._write(fill, uow))
        return d

    def store_in_repository(self, repository: str, mail: Mail) -> defer.Deferred:
        def fill(uow):
            blob_id = uow.blob_id_for(mail)
            kept = mail.duplicate(mail.name)
            uow.add(repositories.store, repository, kept, blob_id)
            uow.after_commit.append(lambda: log_kept(repository, kept))

        return self._write(fill)

    def queue_remote(self, mail: Mail, queue: str = "outgoing", options=None):
        from .delivery.queue_store import enqueue

        def fill(uow):
            blob_id = uow.blob_id_for(mail)
            uow.add(enqueue, mail.duplicate(mail.name), blob_id, queue, dict(options or {}))
            if self.outgoing is not None:
                uow.after_commit.append(self.outgoing.wake)

        return self._write(fill)

    def bounce(self, mail: Mail, message: str, bouncer=None) -> defer.Deferred:
        """A plain text non-delivery notice with the original headers, from the postmaster."""
        if mail.sender is None:
            self.log.info("id={id} not bounced: the sender is <>", id=mail.name)
            return defer.succeed(None)
        notice = EmailMessage(policy=MAIL_POLICY)
        notice["From"] = str(bouncer or self.postmaster)
        notice["To"] = str(mail.sender)
        notice["Subject"] = "Undeliverable mail"
        notice["Date"] = email.utils.formatdate(time.time(), localtime=True)
        notice["Message-ID"] = email.utils.make_msgid(domain=self.server_name)
        notice["Auto-Submitted"] = "auto-replied"
        notice.set_content(
            f"Your message could not be delivered to: "
            f"{', '.join(map(str, mail.recipients))}\n\n{message}\n")
        try:
            headers = mail.headers().as_bytes(policy=MAIL_POLICY)
        except Exception:  # noqa: BLE001 - a broken original still gets a notice
            headers = b""
        notice.add_attachment(headers, maintype="text", subtype="rfc822-headers",
                              disposition="inline")
        out = Mail(sender=None, recipients=[mail.sender], message=notice)
        return self.send_mail(out, "root")


def server_attributes(config) -> dict:
    """The server-wide attributes mailets read with ``get_attribute``."""
    from .delivery.credentials import smarthost_route

    return {"mailet_mta.version": _version(), ATTR_SMARTHOST: smarthost_route(config)}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mailet-mta")
    except Exception:  # noqa: BLE001
        return "0"
