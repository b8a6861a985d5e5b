"""What a POP3 session needs from storage, as Deferreds (SQL never on the reactor)."""

from __future__ import annotations

import uuid

from twisted.internet import defer

from ..storage import mailboxes
from ..storage.leases import LeaseLost
from ..storage.mailbox_locks import acquire_lock, refresh_lock, release_lock
from .maildrop import MaildropCache, load_maildrop

__all__ = ["POP3Backend", "LeaseLost"]


class POP3Backend:
    """Logins, mailbox leases, message lists and contents for POP3 sessions.

    ``authenticator`` is a :class:`~mailet_mta.storage.authenticator.Authenticator`;
    ``node_name`` names this process in mailbox leases (so leases left by a dead
    process can be told apart). ``folder`` is the mailbox POP3 serves.
    """

    lease_seconds = 120.0

    def __init__(self, db, blobs, authenticator, node_name: str, folder: str = "INBOX"):
        self.db = db
        self.blobs = blobs
        self.authenticator = authenticator
        self.node_name = node_name
        self.folder = folder
        self.listings = MaildropCache()

    def prepare(self) -> defer.Deferred:
        """Before the first login: warm the authenticator and the mailbox-state and
        listing queries, so the first session after a start does not pay for them."""
        return defer.gatherResults([self.authenticator.prepare(),
                                    self.db.read(load_maildrop, "", self.folder,
                                                 self.listings)],
                                   consumeErrors=True)

    def new_owner(self) -> str:
        """A lease owner name unique to one session."""
        return f"{self.node_name}/{uuid.uuid4().hex[:16]}"

    def check_login(self, username: str, password: str, client_ip: str) -> defer.Deferred:
        """Deferred → AuthResult (``user``, ``throttled``)."""
        return self.authenticator.check(username, password, client_ip)

    def is_throttled(self, client_ip: str) -> bool:
        return self.authenticator.is_throttled(client_ip)

    def lock(self, user: str, owner: str) -> defer.Deferred:
        """Deferred → True when the session got the mailbox, False when it is in use."""
        return self.db.write(acquire_lock, user, owner, self.lease_seconds)

    def refresh(self, user: str, owner: str) -> defer.Deferred:
        """Deferred → False when the lease was lost."""
        return self.db.write(refresh_lock, user, owner, self.lease_seconds)

    def unlock(self, user: str, owner: str) -> defer.Deferred:
        return self.db.write(release_lock, user, owner)

    def load_maildrop(self, user: str) -> defer.Deferred:
        """Deferred → :class:`~mailet_mta.pop3.maildrop.Maildrop` of ``user``'s mailbox,
        read and rendered on a reader thread (no message body is read)."""
        return self.db.read(load_maildrop, user, self.folder, self.listings)

    def open_message(self, message_id: int) -> defer.Deferred:
        """Deferred → MessageContent (prefix + blob source), or None when it is gone."""
        return self.db.read(mailboxes.message_content, self.blobs, message_id)

    def open_messages(self, message_ids) -> defer.Deferred:
        """Deferred → {message id: MessageContent} for those that still exist."""
        return self.db.read(mailboxes.message_contents, self.blobs, list(message_ids))

    def finish(self, user: str, owner: str, message_ids) -> defer.Deferred:
        """The UPDATE state: delete ``message_ids`` and release the lease, atomically.

        Fails with LeaseLost (deleting nothing) when the lease is no longer ours.
        """
        ids = list(message_ids)

        def update(conn):
            if ids and not refresh_lock(conn, user, owner, self.lease_seconds):
                raise LeaseLost(user)
            removed = mailboxes.delete_messages(conn, ids) if ids else 0
            release_lock(conn, user, owner)
            return removed

        return self.db.write(update)
