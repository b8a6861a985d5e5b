"""``SPFResult`` and ``DMARCDisposition``: route on what the SPF and DMARC mailets
found (they must run earlier in the pipeline)."""

from __future__ import annotations

from mailet_mta.api import Mail

from .whole_mail import WholeMailMatcher

SPF_RESULTS = {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}
DISPOSITIONS = {"none", "quarantine", "reject"}


class _AttributeValueIn(WholeMailMatcher):
    attribute = ""
    key = ""
    allowed: set[str] = set()
    condition_required = True

    def init_matcher(self) -> None:
        self.values = {v.lower() for v in self.condition_list()}
        unknown = self.values - self.allowed
        if unknown:
            self.fail(f"unknown value(s) {sorted(unknown)}: use {sorted(self.allowed)}")

    def matches(self, mail: Mail) -> bool:
        found = mail.get_attribute(self.attribute) or {}
        return str(found.get(self.key, "")).lower() in self.values


class SPFResult(_AttributeValueIn):
    """Matches all recipients when the SPF mailet's result is one of the condition's:
    ``SPFResult=fail`` or ``SPFResult=fail,softfail``."""

    attribute, key, allowed = "mailet_mta.spf", "result", SPF_RESULTS


class DMARCDisposition(_AttributeValueIn):
    """Matches all recipients when the DMARC mailet's disposition (the policy after
    ``pct``) is one of the condition's: ``DMARCDisposition=reject`` or
    ``DMARCDisposition=quarantine,reject``."""

    attribute, key, allowed = "mailet_mta.dmarc", "disposition", DISPOSITIONS
