"""DMARC: the domain of ``From:`` against SPF and DKIM results, RFC 7489."""

from __future__ import annotations

import random

from dkim.util import parse_tag_value
from publicsuffixlist import PublicSuffixList

from mailet_mta.api import GenericMailet, Mail, MailAddress, TemporaryError

from ..auth_results import add_results
from .arc_verify import ATTR_ARC
from .dkim_verify import ATTR_DKIM_RESULTS
from .spf import ATTR_SPF

ATTR_DMARC = "mailet_mta.dmarc"   # {"result", "domain", "policy", "disposition"}
POLICIES = ("none", "quarantine", "reject")
_PSL = PublicSuffixList()         # the list shipped with publicsuffixlist: no network


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (the domain itself if none)."""
    return _PSL.privatesuffix(domain) or domain


class DMARC(GenericMailet):
    """Evaluates the DMARC policy of the ``From:`` domain (the record at
    ``_dmarc.<domain>``, else at the organisational domain per the Public Suffix
    List): the mail passes when an SPF pass or a DKIM pass is aligned with that
    domain (``aspf``/``adkim``: relaxed = same organisational domain, strict = same
    domain). Put it after the ``SPF`` and ``DKIMVerify`` mailets, whose attributes it
    reads.

    Records ``mailet_mta.dmarc`` = {``result`` pass / fail / none / temperror /
    permerror, ``domain``, ``policy`` (``p=``, or ``sp=`` for a subdomain),
    ``disposition``: what to do — the policy, applied to ``pct`` percent of failing
    mail and the next milder one to the rest (§6.6.4)} and a ``dmarc=`` clause of our
    ``Authentication-Results`` header. Route with the ``DMARCDisposition`` matcher
    (``DMARCDisposition=reject``, ``=quarantine``).

    Parameter ``arcTrustedSealers`` (default none): domains whose ARC seal we trust
    (comma separated). A mail that fails DMARC but carries a passing ARC chain
    (``ARCVerify`` before this mailet) whose newest seal is by one of them gets the
    disposition ``none`` instead of the policy (RFC 7489 §6.7 local policy override,
    RFC 8617 §7.2): the forwarder vouches that it passed when it reached them. The
    result stays ``fail``; the clause says ``override=arc`` and the verdict carries
    ``override``.
    """

    info = "evaluates the From: domain's DMARC policy"
    parameters = ("arcTrustedSealers",)

    def init_mailet(self) -> None:
        self.arc_trusted = {d.lower().rstrip(".") for d in self.get_list("arcTrustedSealers")}
    sample = staticmethod(random.random)     # [0, 1): the pct draw

    async def service(self, mail: Mail) -> None:
        verdict = await self.evaluate(mail)
        mail.set_attribute(ATTR_DMARC, verdict)
        clause = f"dmarc={verdict['result']}"
        if verdict["policy"]:
            override = f" override={verdict['override']}" if verdict.get("override") else ""
            clause += f" (p={verdict['policy']} dis={verdict['disposition']}{override})"
        if verdict["domain"]:
            clause += f" header.from={verdict['domain']}"
        add_results(mail, self.context.server_name, [clause])

    async def evaluate(self, mail: Mail) -> dict[str, str]:
        verdict = {"result": "none", "domain": "", "policy": "", "disposition": "none"}
        domain = from_domain(mail)
        if domain is None:
            verdict["result"] = "permerror"       # §6.6.1: not exactly one author domain
            return verdict
        verdict["domain"] = domain
        try:
            record, subdomain = await self.find_record(domain)
        except TemporaryError:
            verdict["result"] = "temperror"
            return verdict
        if record is None:
            return verdict
        policy = record.get("sp" if subdomain else "p", record.get("p", "none"))
        policy = policy if policy in POLICIES else "none"
        verdict["policy"] = policy
        if aligned_pass(mail, domain, record):
            verdict["result"] = "pass"
            return verdict
        verdict["result"] = "fail"
        verdict["disposition"] = self.disposition(policy, record.get("pct", "100"))
        if verdict["disposition"] != "none" and self.trusted_arc(mail):
            verdict["disposition"] = "none"
            verdict["override"] = "arc"
        return verdict

    def trusted_arc(self, mail: Mail) -> bool:
        """True when the mail's ARC chain passed and its newest seal is trusted."""
        arc = mail.get_attribute(ATTR_ARC) or {}
        return arc.get("result") == "pass" and \
            str(arc.get("sealer", "")).lower().rstrip(".") in self.arc_trusted

    def disposition(self, policy: str, pct_text: str) -> str:
        try:
            pct = min(100, max(0, int(pct_text)))
        except ValueError:
            pct = 100
        if pct >= 100 or self.sample() * 100 < pct:
            return policy
        return {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")

    async def find_record(self, domain: str) -> tuple[dict[str, str] | None, bool]:
        """(tags of the DMARC record, True when it is the organisational domain's)."""
        record = await self.lookup(domain)
        if record is not None:
            return record, False
        org = organizational_domain(domain)
        if org != domain:
            record = await self.lookup(org)
            if record is not None:
                return record, True
        return None, False

    async def lookup(self, domain: str) -> dict[str, str] | None:
        records = [r for r in await self.context.dns_lookup(f"_dmarc.{domain}", "TXT")
                   if r.split(b";", 1)[0].strip() == b"v=DMARC1"]
        if len(records) != 1:                 # §6.6.3: none, or several, is no policy
            return None
        try:
            tags = parse_tag_value(records[0])
        except Exception:  # noqa: BLE001 - dkimpy's tag-list errors: no usable policy
            return None
        return {k.decode().lower(): v.decode("ascii", "replace").strip().lower()
                for k, v in tags.items()}


def from_domain(mail: Mail) -> str | None:
    """The domain of the single ``From:`` address, or None."""
    values = mail.headers().get_all("From") or []
    addresses = [a for v in values for a in getattr(v, "addresses", ())]
    if len(addresses) != 1:
        return None
    try:
        return MailAddress.parse(addresses[0].addr_spec).domain.lower()
    except ValueError:
        return None


def _aligned(found: str, domain: str, mode: str) -> bool:
    found = found.lower().rstrip(".")
    if mode == "s":
        return found == domain
    return organizational_domain(found) == organizational_domain(domain)


def aligned_pass(mail: Mail, domain: str, record: dict[str, str]) -> bool:
    """True when an SPF or DKIM pass is aligned with ``domain`` (RFC 7489 §3.1)."""
    spf = mail.get_attribute(ATTR_SPF) or {}
    if spf.get("result") == "pass" and spf.get("identity") == "mailfrom" and \
            _aligned(spf.get("domain", ""), domain, record.get("aspf", "r")):
        return True
    return any(r.get("result") == "pass" and
               _aligned(r.get("domain", ""), domain, record.get("adkim", "r"))
               for r in mail.get_attribute(ATTR_DKIM_RESULTS) or [])
