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

from zope.interface import implementer

from .smtp.backend import ISMTPBackend


@implementer(ISMTPBackend)
class SpoolBackend:
    """ISMTPBackend over the directory, the authenticator, the blob store and the spool."""

    def __init__(self, server_config, listener_config, directory, authenticator, blobs, spool):
        self.server_name = listener_config.helo_name or server_config.server_name
        self.directory = directory
        self.authenticator = authenticator
        self.blobs = blobs
        self.spool = spool

    def is_local_domain(self, domain: str) -> bool:
        return self.directory.is_local_domain(domain)

    def is_local_address(self, addr) -> bool:
        if addr.user.lower() == "postmaster" and self.directory.is_local_domain(addr.domain):
            return True
        return self.directory.is_local_email(addr)

    def identities_of(self, user: str):
        return self.directory.identities_of(user)

    def authenticate(self, username: str, password: str, client_ip: str):
        return self.authenticator.authenticate(username, password, client_ip)

    def is_throttled(self, client_ip: str) -> bool:
        return self.authenticator.is_throttled(client_ip)

    def new_blob_writer(self):
        return self.blobs.writer()

    def message_source(self, blob):
        return self.blobs.source(blob.id, blob.size, blob.data)

    def accept(self, mail, blob):
        return self.spool.accept(mail, blob).addErrback(_storage_full_as_enospc)


_SQLITE_FULL = 13            # SQLITE_FULL: "database or disk is full"
_PG_DISK_FULL = "53100"      # SQLSTATE disk_full


def _storage_full_as_enospc(failure):
    """Turn the database's "out of space" into the OSError a full blob disk raises."""
    error = getattr(failure.value, "orig", None) or failure.value   # SQLAlchemy wraps it
    if getattr(error, "sqlite_errorcode", None) == _SQLITE_FULL or \
            getattr(error, "sqlstate", None) == _PG_DISK_FULL:
        raise OSError(errno.ENOSPC, f"the database is out of space: {error}")
    return failure
