"""What the SMTP server needs from the rest of the mail server: :class:`ISMTPBackend`.

The protocol asks the backend which domains and addresses are local, checks passwords
through it, streams each message body into a blob writer it hands out, and gives it
every accepted mail. The protocol answers ``250`` only after :meth:`ISMTPBackend.accept`
fired: the mail is then durable (spool row and blob committed).

Synchronous methods run on the reactor thread and must answer from memory; anything
slow (SQL, password hashing) belongs behind the Deferreds of ``authenticate`` and
``accept``.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class AuthThrottled(Exception):
    """A login refused before any password check: the client's address failed too
    often or has too many checks in flight. Temporary (``454 4.7.0``), not ``535``."""


class MailRefused(Exception):
    """The failure :meth:`ISMTPBackend.accept` gives to refuse a mail for good at the
    end of DATA/BDAT (e.g. every recipient's mailbox is full): the client gets this
    reply instead of ``451`` and nothing is kept."""

    def __init__(self, code: int, status: str, text: str):
        super().__init__(f"{code} {status} {text}")
        self.reply = (code, status, text)


class ISMTPBackend(Interface):
    """The mail server as the SMTP protocol sees it."""

    server_name = Attribute(
        "str: the host name used in the greeting, EHLO, Received: headers and bare "
        "<postmaster>, unless the listener sets helo_name")

    def is_local_domain(domain):
        """True when mail for ``domain`` (lower-case ASCII; an IP literal like
        ``[192.0.2.1]`` is passed as is) is delivered here. Synchronous, in memory."""

    def is_local_address(addr):
        """True when the MailAddress ``addr`` in a local domain names a user, an alias
        or a postmaster. Synchronous, in memory. May raise: the client then gets
        ``450 4.3.0`` (try again later)."""

    def identities_of(user):
        """The set of MailAddress an authenticated ``user`` may use as MAIL FROM in a
        local domain when verifyIdentity is strict or relaxed (its own addresses and
        aliases). Synchronous."""

    def authenticate(username, password, client_ip):
        """Check a password. Returns a Deferred firing with the canonical user name, or
        None when the credentials are wrong, or failing with :class:`AuthThrottled`
        when the client's address may not try now (answered ``454 4.7.0``, RFC 4954
        §6). The backend applies per-IP throttling and never blocks the reactor
        (hashing runs in a thread)."""

    def new_blob_writer():
        """A fresh :class:`mailet_mta.storage.blobs.BlobWriter` for one message body:
        ``write(chunk)``, ``finish() -> Deferred[BlobRef]``, ``abort()``."""

    def accept(mail, blob):
        """Spool ``mail`` (a :class:`mailet_mta.mail.Mail` whose message is the blob)
        with its finished BlobRef ``blob``. Returns a Deferred that fires once the mail
        is durable; a failure makes the protocol answer ``451 4.3.0`` (or the reply
        of a :class:`MailRefused`), never 250."""


class ISMTPBackendOptional(Interface):
    """Methods a backend may offer; the protocol uses them when present.

    - ``quota_ok(addr, size) -> bool``: False answers RCPT with ``552 5.2.2`` (``size``
      is the declared MAIL SIZE= or 0). May raise: ``450 4.2.1``.
    - ``redirect_of(addr) -> (kind, MailAddress) | None``: a local user that moved.
      ``("forward", new)`` answers RCPT ``251 2.1.5 User not local; will forward to
      <new>`` and accepts the recipient (the pipeline does the forwarding);
      ``("moved", new)`` answers ``551 5.1.6 User not local; please try <new>``.
    - ``refusal_of(addr) -> (code, status, text) | None``: for an address that
      ``is_local_address`` refused, the reply to give instead of ``550 5.1.1 User
      unknown`` (an administrator's ``error:`` mapping).
    - ``postmaster``: the configured postmaster (a MailAddress); a bare
      ``RCPT TO:<postmaster>`` (RFC 5321 §4.5.1) is recorded as this address. Without
      it, bare postmaster is ``postmaster@<server_name>``.
    - ``message_source(blob) -> MessageSource``: the message of a file blob (BlobStore
      .source). Without it the protocol reads the blob file the writer produced.
    - ``authenticate_for(authzid, authcid, password, client_ip) -> Deferred``: a SASL
      PLAIN login asking to act as ``authzid`` (another identity than ``authcid``).
      Fires with the canonical user name of ``authzid`` when the backend allows it,
      else None (answered ``535 5.7.8``). Without it every such login gets 535.
    """

    def quota_ok(addr, size):
        """False when ``addr`` cannot take a message of ``size`` octets now."""

    def redirect_of(addr):
        """``("forward" | "moved", MailAddress)`` for a user that moved, else None."""

    def message_source(blob):
        """A MessageSource reading the finished blob ``blob``."""

    def authenticate_for(authzid, authcid, password, client_ip):
        """The user ``authzid`` when ``authcid``/``password`` may act for it, else
        None (a Deferred)."""
