"""The POP3 server: sessions over the mailbox storage."""

from .backend import POP3Backend
from .factory import POP3ServerFactory, POP3Service, make_pop3_service
from .protocol import POP3Server

__all__ = ["POP3Backend", "POP3Server", "POP3ServerFactory", "POP3Service",
           "make_pop3_service"]
