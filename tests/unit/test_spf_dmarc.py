"""SPF (pyspf over the context's DNS, RFC 7208 limits) and DMARC (RFC 7489
alignment, policy, pct) with their matchers."""

from __future__ import annotations

import pytest
import pytest_twisted

from mailet_mta.api import ConfigurationError, Mail, MailAddress
from mailet_mta.testing import FakeMailContext as MemoryContext
from mailets.mailets.dmarc import DMARC, organizational_domain
from mailets.mailets.spf import SPF
from mailets.matchers.authentication import DMARCDisposition, SPFResult

ZONE = {
    ("a.test", "TXT"): [b"v=spf1 mx ip4:10.0.0.0/8 -all"],
    ("a.test", "MX"): [(10, "mx.a.test")],
    ("mx.a.test", "A"): ["192.0.2.10"],
    ("_dmarc.a.test", "TXT"): [b"v=DMARC1; p=reject; rua=mailto:d@a.test"],
    ("_dmarc.q.test", "TXT"): [b"v=DMARC1; p=quarantine; pct=50"],
    ("q.test", "TXT"): [b"v=spf1 -all"],
}


def mail_from(sender, header_from, ip, helo="client.test"):
    message = (f"From: {header_from}\r\nTo: bob@b.test\r\nSubject: hi\r\n\r\nhi\r\n").encode()
    return Mail(sender=MailAddress.parse(sender) if sender else None,
                recipients=[MailAddress.parse("bob@b.test")], message=message,
                remote_addr=ip, helo=helo)


async def run(ctx, mail, *mailets):
    for mailet in mailets:
        await ctx.mailet(mailet).service(mail)
    return mail


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("ip,result", [("192.0.2.10", "pass"), ("10.9.8.7", "pass"),
                                       ("198.51.100.1", "fail")])
async def test_spf_result_for_the_client_address(ip, result):
    ctx = MemoryContext(server_name="mx.b.test", dns=ZONE)
    mail = await run(ctx, mail_from("x@a.test", "x@a.test", ip), SPF)
    assert mail.get_attribute("mailet_mta.spf")["result"] == result
    header = " ".join(str(mail.headers()["Authentication-Results"]).split())
    assert header == f"mx.b.test; spf={result} smtp.mailfrom=x@a.test"


@pytest_twisted.ensureDeferred
async def test_spf_null_sender_checks_the_helo_name():
    ctx = MemoryContext(dns={("mx.a.test", "TXT"): [b"v=spf1 a -all"],
                             ("mx.a.test", "A"): ["192.0.2.10"]})
    mail = await run(ctx, mail_from(None, "x@a.test", "192.0.2.10", helo="mx.a.test"), SPF)
    assert mail.get_attribute("mailet_mta.spf")["result"] == "pass"
    assert mail.get_attribute("mailet_mta.spf")["identity"] == "helo"


@pytest_twisted.ensureDeferred
async def test_spf_more_than_ten_dns_terms_is_permerror():
    # RFC 7208 §4.6.4: at most 10 terms that cause DNS queries.
    includes = " ".join(f"include:i{n}.test" for n in range(11))
    dns = {("many.test", "TXT"): [f"v=spf1 {includes} -all".encode()]}
    dns.update({(f"i{n}.test", "TXT"): [b"v=spf1 ip4:10.0.0.1 -all"] for n in range(11)})
    ctx = MemoryContext(dns=dns)
    mail = await run(ctx, mail_from("x@many.test", "x@many.test", "198.51.100.1"), SPF)
    assert mail.get_attribute("mailet_mta.spf")["result"] == "permerror"
    assert len(ctx.dns_queries) <= 12


@pytest_twisted.ensureDeferred
async def test_spf_more_than_two_void_lookups_is_permerror():
    # RFC 7208 §4.6.4: at most 2 lookups that answer nothing.
    dns = {("void.test", "TXT"): [b"v=spf1 a:n1.test a:n2.test a:n3.test -all"]}
    ctx = MemoryContext(dns=dns)
    mail = await run(ctx, mail_from("x@void.test", "x@void.test", "198.51.100.1"), SPF)
    assert mail.get_attribute("mailet_mta.spf")["result"] == "permerror"


@pytest_twisted.ensureDeferred
async def test_dmarc_passes_with_aligned_spf_and_adds_one_header():
    ctx = MemoryContext(server_name="mx.b.test", dns=ZONE)
    mail = await run(ctx, mail_from("x@a.test", "Joe <joe@a.test>", "192.0.2.10"), SPF, DMARC)
    assert mail.get_attribute("mailet_mta.dmarc") == {
        "result": "pass", "domain": "a.test", "policy": "reject", "disposition": "none"}
    [header] = mail.headers().get_all("Authentication-Results")
    assert " ".join(str(header).split()) == (
        "mx.b.test; spf=pass smtp.mailfrom=x@a.test; "
        "dmarc=pass (p=reject dis=none) header.from=a.test")


@pytest_twisted.ensureDeferred
async def test_dmarc_forged_from_with_p_reject_is_rejected_and_matched():
    ctx = MemoryContext(dns=ZONE)
    # SPF passes for the attacker's own domain, which is not aligned with From:.
    dns = dict(ZONE)
    dns[("evil.test", "TXT")] = [b"v=spf1 +all"]
    ctx.dns = dns
    mail = await run(ctx, mail_from("x@evil.test", "ceo@a.test", "198.51.100.1"), SPF, DMARC)
    assert mail.get_attribute("mailet_mta.dmarc")["disposition"] == "reject"
    assert ctx.matcher(DMARCDisposition, "reject").match(mail) == mail.recipients
    assert ctx.matcher(DMARCDisposition, "quarantine").match(mail) == []


@pytest_twisted.ensureDeferred
async def test_dmarc_subdomain_uses_the_organizational_record():
    ctx = MemoryContext(dns=ZONE)
    mail = await run(ctx, mail_from("x@evil.test", "ceo@mail.a.test", "198.51.100.1"),
                     SPF, DMARC)
    verdict = mail.get_attribute("mailet_mta.dmarc")
    assert (verdict["result"], verdict["policy"]) == ("fail", "reject")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("draw,disposition", [(0.10, "quarantine"), (0.90, "none")])
async def test_dmarc_pct_applies_the_policy_to_that_share_only(draw, disposition):
    ctx = MemoryContext(dns=ZONE)
    dmarc = ctx.mailet(DMARC)
    dmarc.sample = lambda: draw
    mail = await run(ctx, mail_from("x@q.test", "x@q.test", "198.51.100.1"), SPF)
    await dmarc.service(mail)
    assert mail.get_attribute("mailet_mta.dmarc")["disposition"] == disposition


@pytest_twisted.ensureDeferred
async def test_dmarc_without_record_is_none():
    ctx = MemoryContext(dns=ZONE)
    mail = await run(ctx, mail_from("x@n.test", "x@n.test", "198.51.100.1"), DMARC)
    assert mail.get_attribute("mailet_mta.dmarc")["result"] == "none"


def test_organizational_domain_follows_the_public_suffix_list():
    assert organizational_domain("mail.example.co.uk") == "example.co.uk"
    assert organizational_domain("a.b.example.com") == "example.com"


def test_spf_result_matcher_refuses_an_unknown_result():
    with pytest.raises(ConfigurationError, match="hardfail"):
        MemoryContext().matcher(SPFResult, "fail,hardfail")
