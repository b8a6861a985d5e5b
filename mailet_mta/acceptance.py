"""How the SMTP listeners hand received mail to the spool (the ISMTPBackend).

The protocol asks this backend about local domains and users (answered from the
in-memory directory), checks passwords through the shared Authenticator, streams each
body into a BlobWriter, and calls :meth:`SpoolBackend.accept`, whose Deferred fires
once the mail is durably spooled — only then does the client get ``250``. A database
that is out of space fails that Deferred with ``OSError(ENOSPC)``, as a full blob disk
does, so the client is told ``452 4.3.1`` (try later) either way.
"""

from __future__ import annotations

import errno

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from .directory import usage_of
from .smtp.backend import AuthThrottled, ISMTPBackend, MailRefused
from .storage.users import UserError, normalise_user

log = Logger(namespace="mailet_mta.smtp")


@implementer(ISMTPBackend)
class SpoolBackend:
    """ISMTPBackend over the directory, the authenticator, the blob store and the spool."""

    def __init__(self, server_config, listener_config, directory, authenticator, blobs, spool,
                 context=None, webmail_credential=None):
        self.server_name = listener_config.helo_name or server_config.server_name
        self.dmarc_reject = self.prepare_checks(listener_config, context)
        self.directory = directory
        self.authenticator = authenticator
        self.blobs = blobs
        self.spool = spool
        self.webmail_credential = webmail_credential

    @staticmethod
    def prepare_checks(listener_config, context):
        """The checks before ``250`` that ``listener_config`` asks for (``dmarcReject``,
        ``arcTrustedSealers``) over the mailet ``context``, or None. Built apart from
        :meth:`reconfigure_checks` so a reload makes them before it swaps anything."""
        if not getattr(listener_config, "dmarc_reject", False) or context is None:
            return None
        from .dmarc_at_data import DMARCRejectCheck

        return DMARCRejectCheck(context, getattr(listener_config, "arc_trusted_sealers", ()))

    def reconfigure_checks(self, checks) -> None:
        """Take ``checks`` (from :meth:`prepare_checks`) for the mails whose DATA ends
        from now on; a mail already being checked finishes with the old ones."""
        self.dmarc_reject = checks

    def is_local_domain(self, domain: str) -> bool:
        return self.directory.is_local_domain(domain)

    @property
    def postmaster(self):
        """The configured postmaster: where a bare ``RCPT TO:<postmaster>`` goes."""
        return self.directory.postmaster

    def is_local_address(self, addr) -> bool:
        """The directory's one answer (a user, a deliverable alias, a postmaster) — the
        same one ``RecipientIsLocal`` gives in the pipeline."""
        return self.directory.is_local_email(addr)

    def refusal_of(self, addr):
        """The reply of an ``error:`` mapping for ``addr`` at RCPT, or None."""
        return self.directory.refusal_of(addr)

    def identities_of(self, user: str):
        return self.directory.identities_of(user)

    def authenticate(self, username: str, password: str, client_ip: str):
        def answer(result):
            if not result.verified:
                raise AuthThrottled(client_ip)
            return result.user
        return self.authenticator.check(username, password, client_ip).addCallback(answer)

    def authenticate_for(self, authzid: str, authcid: str, password: str, client_ip: str):
        """The web mail acting for ``authzid`` (see :mod:`.webmail_credential`): the
        user's canonical name, or None for anyone else."""
        cred = self.webmail_credential
        if cred is None or not cred.allows(authcid, password, client_ip):
            log.info("AUTH from {ip}: {authcid!r} may not act as {authzid!r}",
                     ip=client_ip, authcid=authcid[:100], authzid=authzid[:100])
            return defer.succeed(None)
        try:
            user = normalise_user(authzid)
        except UserError:
            user = None
        if user is None or not self.directory.is_local_user(user):
            log.info("AUTH from {ip}: webmail for unknown user {authzid!r} refused",
                     ip=client_ip, authzid=authzid[:100])
            return defer.succeed(None)
        log.info("AUTH from {ip}: webmail for {user}", ip=client_ip, user=user)
        return defer.succeed(user)

    def is_throttled(self, client_ip: str) -> bool:
        return self.authenticator.is_throttled(client_ip)

    def new_blob_writer(self):
        return self.blobs.writer()

    def message_source(self, blob):
        return self.blobs.source(blob.id, blob.size, blob.data, getattr(blob, "head", None))

    def quota_ok(self, addr, size: int) -> bool:
        """False when every mailbox ``addr`` reaches is too full for ``size`` octets
        (RCPT: the cached usage, refreshed each second)."""
        return not self.directory.mailbox_full(addr, size)

    def accept(self, mail, blob):
        if self.dmarc_reject is not None and self.dmarc_reject.applies_to(mail):
            d = self.dmarc_reject.check(mail)
            d.addCallback(lambda _: self._accept_within_quota(mail, blob))
            return d.addErrback(_storage_full_as_enospc)
        return self._accept_within_quota(mail, blob).addErrback(_storage_full_as_enospc)

    def _accept_within_quota(self, mail, blob):
        """Spool the mail — unless every recipient's mailbox is too full for it (the
        exact usage, read off the reactor): then ``552 5.2.2`` and nothing is kept.
        Recipients with room get the mail; a full one gets a delivery report."""
        directory = self.directory
        if not directory.quotas:
            return self.spool.accept(mail, blob)
        users = {u for rcpt in mail.recipients for u in directory.delivery_users(rcpt)
                 if u in directory.quotas}
        if not users:
            return self.spool.accept(mail, blob)

        def check(usage):
            if all(directory.mailbox_full(r, blob.size, usage) for r in mail.recipients):
                raise MailRefused(552, "5.2.2", "Mailbox full: " + ", ".join(
                    f"<{r}>" for r in mail.recipients))
            return self.spool.accept(mail, blob)

        return self.spool.db.read(usage_of, sorted(users)).addCallback(check)


_SQLITE_FULL = 13            # SQLITE_FULL: "database or disk is full"
_PG_DISK_FULL = "53100"      # SQLSTATE disk_full


def _storage_full_as_enospc(failure):
    """Turn the database's "out of space" into the OSError a full blob disk raises."""
    error = getattr(failure.value, "orig", None) or failure.value   # SQLAlchemy wraps it
    if getattr(error, "sqlite_errorcode", None) == _SQLITE_FULL or \
            getattr(error, "sqlstate", None) == _PG_DISK_FULL:
        raise OSError(errno.ENOSPC, f"the database is out of space: {error}")
    return failure
