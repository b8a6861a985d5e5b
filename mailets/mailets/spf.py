"""SPF: check the client's right to send for the MAIL FROM (or HELO) domain, RFC 7208."""

from __future__ import annotations

from typing import Any

import spf as pyspf
from authres import SPFAuthenticationResult

from mailet_mta.api import GenericMailet, Mail, TemporaryError

from ..auth_results import add_results
from ..dns_replay import Answers, run_with_dns

ATTR_SPF = "mailet_mta.spf"       # {"result", "domain", "identity", "explanation"}


class SPF(GenericMailet):
    """Evaluates the SPF record of the envelope sender's domain for the client's IP
    address (``check_host()``, RFC 7208 §4), or of the HELO name for the null sender,
    with the RFC's limits: 10 DNS-querying terms, 2 void lookups, 10 MX or PTR names.
    Evaluation is pyspf's; its DNS questions go through the server's resolver
    (``dns.servers``) and it runs on a mailet worker thread.

    Records the result (``pass``, ``fail``, ``softfail``, ``neutral``, ``none``,
    ``temperror``, ``permerror``) in the attribute ``mailet_mta.spf`` and as an
    ``spf=`` clause of our ``Authentication-Results`` header. Route on it with the
    ``SPFResult`` matcher. Parameters: none.
    """

    info = "checks SPF for the envelope sender"
    parameters = ()

    async def service(self, mail: Mail) -> None:
        sender = str(mail.sender) if mail.sender is not None else ""
        helo = mail.helo or ""
        result, explanation = await run_with_dns(
            self.context, evaluate_spf, mail.remote_addr, sender, helo)
        identity = "mailfrom" if sender else "helo"
        domain = sender.rpartition("@")[2].lower() if sender else helo.lower()
        mail.set_attribute(ATTR_SPF, {"result": result, "domain": domain,
                                      "identity": identity, "explanation": explanation})
        clause = SPFAuthenticationResult(
            result=result, smtp_mailfrom=sender or None,
            smtp_helo=None if sender else helo)
        add_results(mail, self.context.server_name, [clause])


class _Query(pyspf.query):  # type: ignore[misc]  # pyspf has no type hints
    """pyspf's evaluator with its DNS answered from the answers fetched so far."""

    answers: Answers          # set before check()

    def dns(self, name: object, qtype: str, cnames: Any = None,
            ignore_void: bool = False) -> list[Any]:
        name = str(name).rstrip(".").lower()
        if not name or any(not 0 < len(label) < 64 for label in name.split(".")):
            return []                      # not a valid DNS name: nothing to ask
        try:
            records = self.answers.get(name, qtype)
        except TemporaryError as exc:
            raise pyspf.TempError(f"DNS {exc}") from None
        result = [_as_pyspf(qtype, r) for r in records]
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                raise pyspf.PermError(
                    f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
        return result


def _as_pyspf(qtype: str, record: Any) -> Any:
    """A record from ``dns_lookup`` in the shape pyspf's own DNS layer gives it."""
    if qtype in ("TXT", "SPF"):
        return (record,)
    return record


def evaluate_spf(answers: Answers, ip: str, sender: str, helo: str) -> tuple[str, str]:
    """(result, explanation) of check_host() (on a worker thread)."""
    query = _Query(i=ip, s=sender, h=helo, querytime=0)
    query.answers = answers
    result, _code, explanation = query.check()
    return result, explanation
