"""ARCVerify: validate the ARC chain of arriving mail (RFC 8617)."""

from __future__ import annotations

from typing import Any

import dkim
from authres.arc import ARCAuthenticationResult

from mailet_mta.api import GenericMailet, Mail, TemporaryError

from ..auth_results import add_results
from ..dns_replay import Answers, run_with_dns

ATTR_ARC = "mailet_mta.arc"   # {"result", "instances", "sealer", "selector", "reason"}
MAX_INSTANCES = 50            # RFC 8617 §4.2.1: i= ranges from 1 to 50
MIN_RSA_BITS = 1024           # RFC 8301 §3.2, as for DKIM


class ARCVerify(GenericMailet):
    """Validates the ARC chain (RFC 8617 §5.2) of the mail: every ``ARC-Seal`` must
    verify, the newest ``ARC-Message-Signature`` must verify, and the ``cv=`` of each
    seal must be consistent. Records the chain validation status as the attribute
    ``mailet_mta.arc`` (``result`` pass / fail / none / temperror, ``instances``: the
    number of ARC sets, ``sealer`` and ``selector``: ``d=`` and ``s=`` of the newest
    ``ARC-Seal``, ``reason``) and as an ``arc=`` clause of our
    ``Authentication-Results`` header — the clause ``ARCSeal`` reads as ``cv=`` when
    the mail is forwarded on. Keys come from DNS like DKIM's (``s._domainkey.d``).

    Run it with DKIMVerify, SPF and DMARC on mail from outside (DMARC reads the
    attribute for its ``arcTrustedSealers`` override). Parameters: none.
    """

    info = "validates the ARC chain and records the result"
    parameters = ()

    async def service(self, mail: Mail) -> None:
        names = mail.header_names()
        if "arc-seal" not in names:
            verdict = {"result": "none", "instances": 0, "sealer": "", "selector": "",
                       "reason": "no ARC-Seal"}
        elif names.count("arc-seal") > MAX_INSTANCES:
            verdict = {"result": "fail", "instances": 0, "sealer": "", "selector": "",
                       "reason": f"more than {MAX_INSTANCES} ARC sets"}
        else:
            try:
                verdict = await run_with_dns(self.context, verify_chain, mail)
            except TemporaryError as exc:
                verdict = {"result": "temperror", "instances": 0, "sealer": "",
                           "selector": "", "reason": str(exc)}
        mail.set_attribute(ATTR_ARC, verdict)
        clause = ARCAuthenticationResult(
            result=verdict["result"],
            header_as_d=verdict["sealer"] or None, header_as_s=verdict["selector"] or None)
        add_results(mail, self.context.server_name, [clause])


def verify_chain(answers: Answers, mail: Mail) -> dict[str, Any]:
    """The chain validation of the mail's ARC sets (on a worker thread)."""

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        records = answers.get(name.decode() if isinstance(name, bytes) else name, "TXT")
        return records[0] if records else None

    cv, sets, reason = dkim.arc_verify(mail.message_bytes(), dnsfunc=dnsfunc,
                                       minkey=MIN_RSA_BITS)
    newest = sets[0] if sets else {}
    # cv None: a seal said cv=fail, so the chain ended there; that is a failed chain
    result = (cv or dkim.CV_Fail).decode()
    return {"result": result, "instances": len(sets),
            "sealer": newest.get("as-domain", b"").decode("ascii", "replace"),
            "selector": newest.get("as-selector", b"").decode("ascii", "replace"),
            "reason": str(reason)}
