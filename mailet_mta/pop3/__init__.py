"""The POP3 server: sessions over the mail store (:class:`~mailet_mta.mailstore.IMailStore`)."""

from .factory import POP3ServerFactory, POP3Service, make_pop3_service
from .protocol import POP3Server

__all__ = ["POP3Server", "POP3ServerFactory", "POP3Service", "make_pop3_service"]
