"""ARCSeal: add an ARC set to mail we forward after verifying it (RFC 8617)."""

from __future__ import annotations

import dkim

from mailet_mta.api import GenericMailet, Mail

from ..dkim_keys import DKIMKeyError, read_key
from .arc_verify import ATTR_ARC
from .dkim_sign import DEFAULT_HEADERS

ATTR_ARC_SEALED = "mailet_mta.arc.sealed"    # str: "i=<instance> d=<domain> s=<selector>"


class ARCSeal(GenericMailet):
    """Adds the next ARC set (``ARC-Authentication-Results``, ``ARC-Message-Signature``,
    ``ARC-Seal``) to mail that was checked here, so the next hop can trust our
    Authentication-Results when forwarding has broken SPF or DKIM (RFC 8617 §5.1).

    Only mail that ``ARCVerify`` checked on arrival is sealed (it carries the attribute
    ``mailet_mta.arc`` and our ``Authentication-Results`` header, whose clauses become
    the ``ARC-Authentication-Results`` and whose ``arc=`` result becomes ``cv=``);
    other mail (our own users', made by mailets) passes unchanged. Put it in the
    ``relay`` processor before ``RemoteDelivery``, after ``DKIMSign``.

    Parameters:

    - ``key`` (required): ``domain:selector:path`` — the sealing domain (ours), the
      selector and an RSA key file (RFC 8617 §4.1: ARC signs with rsa-sha256 only;
      ``mailet-mta dkim keygen DOMAIN --selector arc --algorithm rsa`` makes one and
      prints the record to publish).
    - ``headers``: the header fields the ARC-Message-Signature signs (default: those
      of DKIMSign).
    """

    info = "seals forwarded mail with ARC"
    parameters = ("key", "headers")

    def init_mailet(self) -> None:
        parts = [p.strip() for p in str(self.get_init_parameter("key", "")).split(":", 2)]
        if len(parts) != 3 or not all(parts):
            self.fail("the parameter 'key' is required: write domain:selector:/path/to/key")
        self.domain, self.selector, path = parts[0].lower(), parts[1], parts[2]
        try:
            key = read_key(path)
        except DKIMKeyError as exc:
            self.fail(str(exc))
        if key.algorithm != "rsa":
            self.fail(f"{path}: ARC seals with rsa-sha256 only (RFC 8617); make an RSA key "
                      "with 'mailet-mta dkim keygen DOMAIN --selector arc --algorithm rsa'")
        self.private = key.private
        headers = [h.lower() for h in self.get_list("headers", DEFAULT_HEADERS)]
        self.headers = [h.encode() for h in dict.fromkeys(["from", *headers])]

    async def service(self, mail: Mail) -> None:
        if mail.get_attribute(ATTR_ARC) is None:
            return                     # not checked on arrival: nothing to vouch for
        instance = await self.context.run_in_worker(self._seal, mail,
                                                     self.context.server_name)
        if instance:
            mail.set_attribute(ATTR_ARC_SEALED,
                               f"i={instance} d={self.domain} s={self.selector}")
        else:
            self.log.info("id={id} not ARC-sealed: the chain had ended or no "
                          "Authentication-Results of ours", id=mail.name)

    def _seal(self, mail: Mail, authserv_id: str) -> int:
        """Add the ARC set; its instance number, or 0 when dkimpy added none."""
        data = mail.message_bytes()
        arc_set = dkim.arc_sign(data, self.selector.encode(), self.domain.encode(),
                                self.private, authserv_id.encode(),
                                include_headers=self.headers)
        if not arc_set:
            return 0
        mail.set_message_bytes(b"".join(arc_set) + data)
        seal = arc_set[0]
        return int(seal.split(b"i=", 1)[1].split(b";", 1)[0])
