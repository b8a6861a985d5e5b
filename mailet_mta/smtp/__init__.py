"""The ESMTP server: RFC 5321 with PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES,
STARTTLS, AUTH PLAIN/LOGIN, SMTPUTF8, CHUNKING and DSN, over an :class:`ISMTPBackend`.

Entry points: :func:`make_smtp_service` (a Twisted service for one listener) and
:class:`SMTPServerFactory` (for ``listenTCP``). The reply-code table is in
:mod:`mailet_mta.smtp.replies`, the relay rules in :mod:`mailet_mta.smtp.relay_policy`.
"""

from .backend import ISMTPBackend, ISMTPBackendOptional
from .protocol import SMTPServerProtocol
from .server import SMTPServerFactory, SMTPService, make_smtp_service

__all__ = ["ISMTPBackend", "ISMTPBackendOptional", "SMTPServerProtocol",
           "SMTPServerFactory", "SMTPService", "make_smtp_service"]
