"""DMARC ``reject`` refused at the end of DATA with ``550 5.7.1`` (RFC 7489 §6.6.3,
§10.3: a rejecting receiver SHOULD refuse during the SMTP transaction).

On a listener with ``dmarcReject: true``, mail from a client that neither logged in
nor sent from ``authorizedAddresses`` goes through the standard ``DKIMVerify``,
``SPF`` and ``DMARC`` mailets (and ``ARCVerify`` when the listener names
``arcTrustedSealers``) before the ``250`` — on a copy of the mail, so the
pipeline gets it unchanged and checks it again there if configured to. When the
``From:`` domain's policy says reject (after ``pct``), the client gets ``550 5.7.1``
and nothing is kept: the sender's own server returns the mail, no backscatter.
"""

from __future__ import annotations

from twisted.internet import defer

from .api import ATTR_AUTH_NETWORK, MailetConfig
from .smtp.backend import MailRefused

CHECKS = ("DKIMVerify", "SPF", "DMARC")
ATTR_DMARC = "mailet_mta.dmarc"


class DMARCRejectCheck:
    """The checks, set up once per listener over the server's mailet context; with
    ``arc_trusted_sealers`` (the listener's ``arcTrustedSealers``) ARCVerify runs too
    and DMARC lets a failure through when one of them sealed a passing ARC chain."""

    def __init__(self, context, arc_trusted_sealers=()):
        from mailets.mailets.arc_verify import ARCVerify
        from mailets.mailets.dkim_verify import DKIMVerify
        from mailets.mailets.dmarc import DMARC
        from mailets.mailets.spf import SPF

        sealers = ",".join(arc_trusted_sealers)
        checks: list[tuple[type, dict]] = [(DKIMVerify, {}), (SPF, {})]
        if sealers:
            checks.append((ARCVerify, {}))
        checks.append((DMARC, {"arcTrustedSealers": sealers} if sealers else {}))
        self.mailets = []
        for cls, parameters in checks:
            mailet = cls()
            mailet.init(MailetConfig(cls.__name__, context, parameters, "smtp"))
            self.mailets.append(mailet)

    @staticmethod
    def applies_to(mail) -> bool:
        """Only mail from outside: not logged in, not from an authorized network."""
        return not mail.auth_user and not mail.get_attribute(ATTR_AUTH_NETWORK)

    @defer.inlineCallbacks
    def check(self, mail):
        """Deferred: fires with None, or fails with MailRefused(550, 5.7.1)."""
        probe = mail.duplicate(mail.name)
        for mailet in self.mailets:
            yield defer.ensureDeferred(mailet.service(probe))
        verdict = probe.get_attribute(ATTR_DMARC) or {}
        if verdict.get("disposition") == "reject":
            raise MailRefused(550, "5.7.1", f"Message refused: it fails the DMARC policy "
                                            f"(p=reject) of {verdict.get('domain')}")
        return None
