"""DKIMVerify: check every DKIM signature of arriving mail (RFC 6376, RFC 8463)."""

from __future__ import annotations

import dkim
from authres import DKIMAuthenticationResult

from mailet_mta.api import GenericMailet, Mail, TemporaryError

from ..auth_results import add_results
from ..dns_replay import Answers, run_with_dns

ATTR_DKIM_RESULTS = "mailet_mta.dkim.results"   # [{"result", "domain", "selector", …}]
MAX_SIGNATURES = 10
MIN_RSA_BITS = 1024           # RFC 8301 §3.2: verifiers MUST NOT accept smaller keys


class DKIMVerify(GenericMailet):
    """Verifies each ``DKIM-Signature`` of the mail (at most ``maxSignatures``, the
    first ones) with the key published in DNS, and records the outcome: the attribute
    ``mailet_mta.dkim.results`` (one dict per signature: ``result`` pass / fail /
    neutral / temperror / permerror, ``domain``, ``selector``, ``algorithm``) and
    ``dkim=`` clauses of the one ``Authentication-Results`` header with our
    authserv-id (the server name). ``dkim=none`` when the mail has no signature.
    RSA keys under 1024 bits fail (RFC 8301); ``rsa-sha1`` signatures fail too.

    Parameters: ``maxSignatures`` (default 10).
    """

    info = "verifies DKIM signatures and records the results"
    parameters = ("maxSignatures",)

    def init_mailet(self) -> None:
        self.max_signatures = self.get_int("maxSignatures", MAX_SIGNATURES) or 0
        if self.max_signatures < 1:
            self.fail("maxSignatures must be at least 1")

    async def service(self, mail: Mail) -> None:
        count = min(mail.header_names().count("dkim-signature"), self.max_signatures)
        results = await run_with_dns(self.context, verify_signatures, mail, count) if count else []
        mail.set_attribute(ATTR_DKIM_RESULTS, results)
        clauses = [DKIMAuthenticationResult(
            result=r["result"], header_d=r["domain"], header_s=r["selector"],
            header_a=r["algorithm"]) for r in results] or ["dkim=none"]
        add_results(mail, self.context.server_name, clauses)


def verify_signatures(answers: Answers, mail: Mail, count: int) -> list[dict[str, str]]:
    """The result of each of the first ``count`` signatures (on a worker thread)."""
    data = mail.message_bytes()

    return [_verify_one(data, idx, answers) for idx in range(count)]


def _verify_one(data: bytes, idx: int, answers: Answers) -> dict[str, str]:
    missing: list[bytes | str] = []

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        records = answers.get(name.decode() if isinstance(name, bytes) else name, "TXT")
        if not records:
            missing.append(name)
        return records[0] if records else None

    verifier = dkim.DKIM(data, minkey=MIN_RSA_BITS)
    out = {"result": "neutral", "domain": "", "selector": "", "algorithm": ""}
    try:
        prep = verifier.verify_headerprep(idx)
    except dkim.DKIMException:        # RFC 8601 §2.7.1: a signature with syntax errors
        return out
    if prep:
        tags = prep[0]
        out.update(domain=tags.get(b"d", b"").decode("ascii", "replace"),
                   selector=tags.get(b"s", b"").decode("ascii", "replace"),
                   algorithm=tags.get(b"a", b"").decode("ascii", "replace"))
    try:
        ok = verifier.verify(idx=idx, dnsfunc=dnsfunc)
        if ok and out["algorithm"] == "rsa-sha1":
            ok = False                # RFC 8301 §3.1: rsa-sha1 is no longer valid
        # RFC 8601 §2.7.1: no key record is a permanent error, not a failed signature
        out["result"] = "pass" if ok else ("permerror" if missing else "fail")
    except TemporaryError:
        out["result"] = "temperror"
    except dkim.ValidationError:      # e.g. the body hash does not match
        out["result"] = "fail"
    except dkim.DKIMException:        # a key record that is broken or too small
        out["result"] = "permerror"
    return out
