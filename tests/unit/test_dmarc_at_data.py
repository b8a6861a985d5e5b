"""The end-of-DATA DMARC check: which mail it looks at and what it answers."""

from __future__ import annotations

import pytest
import pytest_twisted

from mailet_mta.api import ATTR_AUTH_NETWORK, Mail, MailAddress
from mailet_mta.dmarc_at_data import DMARCRejectCheck
from mailet_mta.smtp.backend import MailRefused
from mailet_mta.testing import FakeMailContext as MemoryContext

ZONE = {("_dmarc.a.test", "TXT"): [b"v=DMARC1; p=reject"],
        ("_dmarc.n.test", "TXT"): [b"v=DMARC1; p=none"]}


def mail(header_from: str, **kw) -> Mail:
    return Mail(sender=MailAddress.parse("x@evil.test"),
                recipients=[MailAddress.parse("bob@b.test")],
                message=f"From: {header_from}\r\nSubject: s\r\n\r\nhi\r\n".encode(),
                remote_addr="198.51.100.1", helo="evil.test", **kw)


@pytest_twisted.ensureDeferred
async def test_dmarc_reject_failure_is_refused_with_550_5_7_1_and_the_mail_unchanged():
    check = DMARCRejectCheck(MemoryContext(dns=ZONE))
    forged = mail("ceo@a.test")
    before = forged.message_bytes()
    with pytest.raises(MailRefused) as info:
        await check.check(forged)
    assert info.value.reply[:2] == (550, "5.7.1") and "a.test" in info.value.reply[2]
    assert forged.message_bytes() == before and forged.attributes == {}


@pytest_twisted.ensureDeferred
async def test_dmarc_failure_under_p_none_is_accepted():
    assert await DMARCRejectCheck(MemoryContext(dns=ZONE)).check(mail("x@n.test")) is None


def test_only_mail_from_outside_is_checked():
    check = DMARCRejectCheck(MemoryContext(dns=ZONE))
    assert check.applies_to(mail("ceo@a.test"))
    assert not check.applies_to(mail("ceo@a.test", auth_user="alice@a.test"))
    assert not check.applies_to(mail("ceo@a.test", attributes={ATTR_AUTH_NETWORK: True}))


@pytest_twisted.ensureDeferred
async def test_a_trusted_arc_seal_lets_a_forwarded_dmarc_failure_through(tmp_path):
    from mailets.dkim_keys import generate_key
    from mailets.mailets.arc_seal import ARCSeal
    from mailets.mailets.arc_verify import ARCVerify

    key = generate_key("rsa")
    (tmp_path / "b.key").write_bytes(key.private)
    zone = {**ZONE, ("arc._domainkey.b.test", "TXT"): [key.public_record().encode()]}
    forwarder = MemoryContext(server_name="mx.b.test", dns=zone)
    forwarded = mail("ceo@a.test")
    await forwarder.mailet(ARCVerify).service(forwarded)
    await forwarder.mailet(ARCSeal, key=f"b.test:arc:{tmp_path / 'b.key'}").service(forwarded)
    arrived = Mail(sender=forwarded.sender, recipients=forwarded.recipients,
                   message=forwarded.message_bytes(), remote_addr="198.51.100.1",
                   helo="mx.b.test")
    assert await DMARCRejectCheck(MemoryContext(dns=zone), ["b.test"]).check(arrived) is None
    with pytest.raises(MailRefused):
        await DMARCRejectCheck(MemoryContext(dns=zone), ["c.test"]).check(arrived)
    with pytest.raises(MailRefused):
        await DMARCRejectCheck(MemoryContext(dns=zone)).check(arrived)
