"""Remote delivery: the outgoing queue, MX resolution, the SMTP client, retries and
failure reports.

``queue_store.enqueue`` adds a mail to the ``outgoing`` table (inside the caller's
transaction); :class:`OutgoingQueueService` delivers it; :class:`Resolver` answers
where a domain's mail goes.
"""

from .options import DeliveryOptions
from .resolver import DNSPermanentError, DNSTemporaryError, Resolver
from .service import OutgoingQueueService

__all__ = ["DeliveryOptions", "DNSPermanentError", "DNSTemporaryError", "OutgoingQueueService",
           "Resolver"]
