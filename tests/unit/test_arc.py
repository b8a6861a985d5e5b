"""ARCVerify and ARCSeal (RFC 8617): a seal made here verifies at the next hop and
through two hops, a change after sealing fails the chain, only mail checked on arrival
is sealed, and DMARC's override for a trusted sealer."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from mailet_mta.api import ConfigurationError, Mail, TemporaryError
from mailet_mta.testing import FakeMailContext
from mailets.dkim_keys import generate_key
from mailets.mailets.arc_seal import ATTR_ARC_SEALED, ARCSeal
from mailets.mailets.arc_verify import ATTR_ARC, MAX_INSTANCES, ARCVerify
from mailets.mailets.dmarc import ATTR_DMARC, DMARC

MESSAGE = (b"From: Alice <alice@a.test>\r\nTo: list@b.test\r\nSubject: hello\r\n"
           b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@a.test>\r\n\r\n"
           b"Hello list.\r\n")
KEYS = {name: generate_key("rsa") for name in ("b.test", "c.test")}
DNS = {(f"arc._domainkey.{d}", "TXT"): [k.public_record().encode()] for d, k in KEYS.items()}
DNS[("_dmarc.a.test", "TXT")] = [b"v=DMARC1; p=reject"]


def ar_header(mail, authserv_id) -> str:
    values = [" ".join(str(v).split()) for v in
              mail.headers().get_all("Authentication-Results") or []]
    [ours] = [v for v in values if v.startswith(authserv_id + ";")]
    return ours


async def hop(tmp_path, mail, domain, seal=True):
    """What a forwarding server ``domain`` does: verify the chain, then seal."""
    mail = Mail(message=mail.message_bytes())     # a new server: no attributes yet
    ctx = FakeMailContext(server_name=f"mx.{domain}", dns=DNS)
    await ctx.mailet(ARCVerify).service(mail)
    if seal:
        path = tmp_path / f"{domain}.key"
        path.write_bytes(KEYS[domain].private)
        await ctx.mailet(ARCSeal, key=f"{domain}:arc:{path}").service(mail)
    return mail


async def receive(mail):
    mail = Mail(message=mail.message_bytes())
    ctx = FakeMailContext(server_name="mx.d.test", dns=DNS)
    await ctx.mailet(ARCVerify).service(mail)
    return mail


@pytest_twisted.ensureDeferred
async def test_mail_without_arc_headers_is_arc_none_and_sealed_with_cv_none(tmp_path):
    mail = await hop(tmp_path, Mail(message=MESSAGE), "b.test")
    assert mail.get_attribute(ATTR_ARC)["result"] == "none"
    assert "arc=none" in ar_header(mail, "mx.b.test")
    assert mail.get_attribute(ATTR_ARC_SEALED) == "i=1 d=b.test s=arc"
    data = mail.message_bytes()
    assert data.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=b.test; s=arc")
    assert b"ARC-Authentication-Results: i=1; mx.b.test" in data
    assert b"ARC-Message-Signature: i=1;" in data


@pytest_twisted.ensureDeferred
async def test_seal_verifies_at_the_next_hop(tmp_path):
    mail = await hop(tmp_path, Mail(message=MESSAGE), "b.test")
    mail = await receive(mail)
    verdict = mail.get_attribute(ATTR_ARC)
    assert (verdict["result"], verdict["instances"], verdict["sealer"]) == ("pass", 1, "b.test")
    assert "arc=pass header.as-d=b.test header.as-s=arc" in ar_header(mail, "mx.d.test")


@pytest_twisted.ensureDeferred
async def test_chain_of_two_seals_verifies(tmp_path):
    mail = await hop(tmp_path, Mail(message=MESSAGE), "b.test")
    mail = await hop(tmp_path, mail, "c.test")
    assert mail.get_attribute(ATTR_ARC)["result"] == "pass"   # c.test checked b's seal
    assert mail.message_bytes().startswith(b"ARC-Seal: i=2; cv=pass;")
    verdict = (await receive(mail)).get_attribute(ATTR_ARC)
    assert (verdict["result"], verdict["instances"], verdict["sealer"]) == ("pass", 2, "c.test")


@pytest_twisted.ensureDeferred
async def test_body_changed_after_the_seal_fails_the_chain(tmp_path):
    mail = await hop(tmp_path, Mail(message=MESSAGE), "b.test")
    mail.set_message_bytes(mail.message_bytes().replace(b"Hello list", b"Pay me now"))
    assert (await receive(mail)).get_attribute(ATTR_ARC)["result"] == "fail"


@pytest_twisted.ensureDeferred
async def test_seal_with_a_key_not_in_dns_fails(tmp_path):
    mail = Mail(message=(await hop(tmp_path, Mail(message=MESSAGE), "b.test")).message_bytes())
    ctx = FakeMailContext(server_name="mx.d.test", dns={})
    await ctx.mailet(ARCVerify).service(mail)
    assert mail.get_attribute(ATTR_ARC)["result"] == "fail"


class FailingDNS(FakeMailContext):
    def dns_lookup(self, name, rrtype="TXT"):
        return defer.fail(TemporaryError("DNS timeout"))


@pytest_twisted.ensureDeferred
async def test_dns_timeout_is_temperror(tmp_path):
    mail = Mail(message=(await hop(tmp_path, Mail(message=MESSAGE), "b.test")).message_bytes())
    await FailingDNS(server_name="mx.d.test").mailet(ARCVerify).service(mail)
    assert mail.get_attribute(ATTR_ARC)["result"] == "temperror"


@pytest_twisted.ensureDeferred
async def test_more_arc_sets_than_rfc_8617_allows_fail_without_verifying():
    seals = b"".join(b"ARC-Seal: i=%d; cv=pass; a=rsa-sha256; d=x.test; s=s; b=AA==\r\n" % i
                     for i in range(1, MAX_INSTANCES + 2))
    ctx = FakeMailContext(server_name="mx.d.test", dns=DNS)
    mail = Mail(message=seals + MESSAGE)
    await ctx.mailet(ARCVerify).service(mail)
    assert mail.get_attribute(ATTR_ARC)["result"] == "fail"
    assert ctx.dns_queries == [] and ctx.worker_calls == 0


@pytest_twisted.ensureDeferred
async def test_mail_not_checked_on_arrival_is_not_sealed(tmp_path):
    path = tmp_path / "b.key"
    path.write_bytes(KEYS["b.test"].private)
    ctx = FakeMailContext(server_name="mx.b.test", dns=DNS)
    mail = Mail(message=MESSAGE)
    await ctx.mailet(ARCSeal, key=f"b.test:arc:{path}").service(mail)
    assert mail.message_bytes() == MESSAGE
    assert mail.get_attribute(ATTR_ARC_SEALED) is None


def test_arc_seal_refuses_an_ed25519_key_and_a_missing_key(tmp_path):
    path = tmp_path / "ed.key"
    path.write_bytes(generate_key("ed25519").private)
    ctx = FakeMailContext()
    with pytest.raises(ConfigurationError, match="rsa-sha256 only"):
        ctx.mailet(ARCSeal, key=f"b.test:arc:{path}")
    with pytest.raises(ConfigurationError, match="'key' is required"):
        ctx.mailet(ARCSeal)
    with pytest.raises(ConfigurationError, match="missing.key"):
        ctx.mailet(ARCSeal, key=f"b.test:arc:{tmp_path / 'missing.key'}")


async def dmarc_after_forwarding(tmp_path, trusted):
    """A forwarded mail whose DKIM and SPF no longer pass, sealed by b.test."""
    mail = await receive(await hop(tmp_path, Mail(message=MESSAGE), "b.test"))
    ctx = FakeMailContext(server_name="mx.d.test", dns=DNS)
    await ctx.mailet(DMARC, arcTrustedSealers=trusted).service(mail)
    return mail


@pytest_twisted.ensureDeferred
async def test_dmarc_reject_is_overridden_for_a_trusted_arc_sealer(tmp_path):
    mail = await dmarc_after_forwarding(tmp_path, "b.test")
    verdict = mail.get_attribute(ATTR_DMARC)
    assert (verdict["result"], verdict["disposition"], verdict["override"]) == \
        ("fail", "none", "arc")
    assert "dmarc=fail (p=reject dis=none override=arc) header.from=a.test" in \
        ar_header(mail, "mx.d.test")


@pytest_twisted.ensureDeferred
async def test_dmarc_reject_stands_for_an_untrusted_arc_sealer(tmp_path):
    mail = await dmarc_after_forwarding(tmp_path, "c.test")
    verdict = mail.get_attribute(ATTR_DMARC)
    assert (verdict["result"], verdict["disposition"]) == ("fail", "reject")
    assert "override" not in verdict
