"""DKIMSign and DKIMVerify: the RFC 6376 and RFC 8463 examples, signing round trips, RFC 8301 key
sizes, and the one Authentication-Results header with our authserv-id."""

from __future__ import annotations

import dkim
import pytest
import pytest_twisted

from mailet_mta.api import ConfigurationError, Mail
from mailet_mta.testing import FakeMailContext as MemoryContext
from mailets.dkim_keys import SigningKey, generate_key, parse_key
from mailets.mailets.dkim_sign import DKIMSign
from mailets.mailets.dkim_verify import ATTR_DKIM_RESULTS, DKIMVerify

# RFC 8463 Appendix A.2 (the key records) and A.3 (the signed message).
RFC8463_ED25519 = b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RFC8463_RSA = (b"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
               b"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
               b"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
               b"Ip3G+2kryOTIKT+l/K4w3QIDAQAB")
RFC8463_MESSAGE = "\r\n".join([
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;",
    " d=football.example.com; i=@football.example.com;",
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :",
    " subject : date : message-id : from : subject : date;",
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus",
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==",
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;",
    " d=football.example.com; i=@football.example.com;",
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :",
    " date : message-id : from : subject : date;",
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3",
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz",
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=",
    "From: Joe SixPack <joe@football.example.com>",
    "To: Suzie Q <suzie@shopping.example.net>",
    "Subject: Is dinner ready?",
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>",
    "",
    "Hi.",
    "",
    "We lost the game.  Are you hungry yet?",
    "",
    "Joe.",
    "",
]).encode()
RFC8463_DNS = {("brisbane._domainkey.football.example.com", "TXT"): [RFC8463_ED25519],
               ("test._domainkey.football.example.com", "TXT"): [RFC8463_RSA]}

# RFC 6376 Appendix C: the public key of selector "brisbane" (1024-bit RSA).
RFC6376_BRISBANE = (b"v=DKIM1; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3"
                    b"/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/Rt"
                    b"dC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPD"
                    b"dQPNUYckcQ2QIDAQAB")
RFC6376_DNS = {("brisbane._domainkey.example.com", "TXT"): [RFC6376_BRISBANE]}


def rfc6376_message(body_line: str) -> bytes:
    """RFC 6376 Appendix A.2 (the signed form of A.1) with ``body_line`` as the
    third line of the body."""
    return "\r\n".join([
        "DKIM-Signature: v=1; a=rsa-sha256; s=brisbane; d=example.com;",
        "      c=simple/simple; q=dns/txt; i=joe@football.example.com;",
        "      h=Received : From : To : Subject : Date : Message-ID;",
        "      bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
        "      b=AuUoFEfDxTDkHlLXSZEpZj79LICEps6eda7W3deTVFOk4yAUoqOB",
        "        4nujc7YopdG5dWLSdNg6xNAZpOPr+kHxt1IrE+NahM6L/LbvaHut",
        "        KVdkLLkpVaVVQPzeRDI009SO2Il5Lu7rDNH6mZckBdrIx0orEtZV",
        "        4bmp/YzhwvcubU4=;",
        "Received: from client1.football.example.com  [192.0.2.1]",
        "      by submitserver.example.com with SUBMISSION;",
        "      Fri, 11 Jul 2003 21:01:54 -0700 (PDT)",
        "From: Joe SixPack <joe@football.example.com>",
        "To: Suzie Q <suzie@shopping.example.net>",
        "Subject: Is dinner ready?",
        "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
        "Message-ID: <20030712040037.46341.5F8J@football.example.com>",
        "",
        "Hi.",
        "",
        body_line,
        "",
        "Joe.",
        "",
    ]).encode()


# A 512-bit RSA key (cryptography refuses to make one); RFC 8301 §3.2 forbids it.
RSA_512_BITS = b"""\
-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBAMnAFNjJ/bTxHs6uBSojs6ur0mR3WH3KS2mCnXs2eWMBOCbTyOUU
D3CKQIGxV6D/+VATy4tU0PAreyeo8ARhm8ECAwEAAQJAY4dCAYzsf3YwV4/b9mT0
fy1dtrh1zGCfAWcxX5aJHcCbfXZ1AxGjRuJU2pNH78QmtxtqJN3Ysc5c4hoGvxoq
rQIhAP9QlQQ6XocXnv+xZ/fY+KJOQ4nJHpnHOy/EZvbfVJ4vAiEAykqycqep1bgG
vS0N0W3vlO62yk/ZzIWQaKY6zPXyWQ8CICw8bwVDg7tOWWsd9tCXlESy4LrP0PB9
94BIPDrL6SJbAiBEMBektEV4R/blj6lHvgHzNuAgo/fri94YmGfbrM/LGwIhAMAl
C2zZen8aCs9M9nolA4cRFZ5dI29qk04v7KK9qe65
-----END RSA PRIVATE KEY-----
"""

PLAIN = (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hello\r\n"
         b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@a.test>\r\n\r\n"
         b"Hello Bob.\r\n")


def ar_headers(mail) -> list[str]:
    """The Authentication-Results values, unfolded, white space runs as one space."""
    return [" ".join(str(v).split()) for v in
            mail.headers().get_all("Authentication-Results") or []]


def key_file(tmp_path, key: SigningKey, name="a.key"):
    path = tmp_path / name
    path.write_bytes(key.private)
    return str(path)


async def sign_and_verify(tmp_path, key, message=PLAIN, tamper=None):
    ctx = MemoryContext(server_name="mx.b.test",
                        dns={("sel._domainkey.a.test", "TXT"): [key.public_record().encode()]})
    signer = ctx.mailet(DKIMSign, keys=f"a.test:sel:{key_file(tmp_path, key)}")
    mail = Mail(message=message)
    await signer.service(mail)
    if tamper:
        mail.set_message_bytes(tamper(mail.message_bytes()))
    await ctx.mailet(DKIMVerify).service(mail)
    return mail


@pytest_twisted.ensureDeferred
async def test_rfc8463_example_verifies_both_signatures():
    ctx = MemoryContext(server_name="mx.shopping.example.net", dns=RFC8463_DNS)
    mail = Mail(message=RFC8463_MESSAGE)
    await ctx.mailet(DKIMVerify).service(mail)
    results = mail.get_attribute(ATTR_DKIM_RESULTS)
    assert [(r["result"], r["selector"], r["algorithm"]) for r in results] == [
        ("pass", "brisbane", "ed25519-sha256"), ("pass", "test", "rsa-sha256")]
    [header] = ar_headers(mail)
    assert header.startswith("mx.shopping.example.net;")
    assert "dkim=pass header.d=football.example.com header.a=ed25519-sha256 " \
           "header.s=brisbane; dkim=pass" in header


@pytest_twisted.ensureDeferred
async def test_rfc8463_example_with_a_changed_body_fails():
    ctx = MemoryContext(dns=RFC8463_DNS)
    mail = Mail(message=RFC8463_MESSAGE.replace(b"hungry", b"angry"))
    await ctx.mailet(DKIMVerify).service(mail)
    assert [r["result"] for r in mail.get_attribute(ATTR_DKIM_RESULTS)] == ["fail", "fail"]


@pytest_twisted.ensureDeferred
async def test_rfc6376_example_verifies_in_its_corrected_form():
    """RFC 6376 Appendix A.2 with the Appendix C key, the key answered by DNS.

    As printed, the example does not verify: the body line reads "We lost the
    game.  Are you hungry yet?" with two spaces after "game." (RFC 8463 A.3 copies it
    so), but ``bh=`` and ``b=`` were computed over the line with one space, and the
    signature uses ``c=simple/simple``, whose body canonicalization keeps every space,
    so the body hash differs (the RFC 6376 errata, ID 3192 among them, report
    that the example fails). RFC 8463 reuses the same body under
    ``relaxed``, which folds the spaces to one, and there the same ``bh=`` passes.
    The corrected form below (one space; headers, signature and key exactly as
    printed) verifies; the printed form is checked to fail on the body hash in the
    next test, so this one cannot pass by accident."""
    ctx = MemoryContext(server_name="mx.shopping.example.net", dns=RFC6376_DNS)
    mail = Mail(message=rfc6376_message("We lost the game. Are you hungry yet?"))
    await ctx.mailet(DKIMVerify).service(mail)
    results = mail.get_attribute(ATTR_DKIM_RESULTS)
    assert [(r["result"], r["domain"], r["selector"], r["algorithm"]) for r in results] \
        == [("pass", "example.com", "brisbane", "rsa-sha256")]
    [header] = ar_headers(mail)
    assert "dkim=pass header.d=example.com header.a=rsa-sha256 header.s=brisbane" in header


@pytest_twisted.ensureDeferred
async def test_rfc6376_example_as_printed_fails_on_its_body_hash():
    """The printed body (two spaces after "game.") under simple body
    canonicalization: the body hash differs, so ``fail`` — as the errata say."""
    ctx = MemoryContext(dns=RFC6376_DNS)
    mail = Mail(message=rfc6376_message("We lost the game.  Are you hungry yet?"))
    await ctx.mailet(DKIMVerify).service(mail)
    assert [r["result"] for r in mail.get_attribute(ATTR_DKIM_RESULTS)] == ["fail"]


@pytest_twisted.ensureDeferred
async def test_rfc6376_example_without_its_key_record_is_permerror():
    mail = Mail(message=rfc6376_message("We lost the game. Are you hungry yet?"))
    await MemoryContext(dns={}).mailet(DKIMVerify).service(mail)
    assert [r["result"] for r in mail.get_attribute(ATTR_DKIM_RESULTS)] == ["permerror"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
async def test_dkim_sign_then_verify_passes(tmp_path, algorithm):
    mail = await sign_and_verify(tmp_path, generate_key(algorithm))
    assert mail.message_bytes().startswith(b"DKIM-Signature: v=1; a=" +
                                           {"ed25519": b"ed25519-sha256",
                                            "rsa": b"rsa-sha256"}[algorithm])
    [result] = mail.get_attribute(ATTR_DKIM_RESULTS)
    assert (result["result"], result["domain"], result["selector"]) == ("pass", "a.test", "sel")


@pytest_twisted.ensureDeferred
async def test_dkim_signature_over_a_changed_subject_fails(tmp_path):
    mail = await sign_and_verify(tmp_path, generate_key(),
                                 tamper=lambda b: b.replace(b"hello", b"pay now"))
    assert mail.get_attribute(ATTR_DKIM_RESULTS)[0]["result"] == "fail"


@pytest_twisted.ensureDeferred
async def test_dkim_rsa_key_under_1024_bits_is_refused(tmp_path):
    key = parse_key(RSA_512_BITS)
    mail = await sign_and_verify(tmp_path, key)
    assert mail.get_attribute(ATTR_DKIM_RESULTS)[0]["result"] == "permerror"
    # the same signature passes a verifier that takes small keys: only the size failed
    record = key.public_record().encode()
    assert dkim.verify(mail.message_bytes(), minkey=512, dnsfunc=lambda *_a, **_k: record)


@pytest_twisted.ensureDeferred
async def test_dkim_signature_without_key_record_is_permerror(tmp_path):
    ctx = MemoryContext()
    signer = ctx.mailet(DKIMSign, keys=f"a.test:sel:{key_file(tmp_path, generate_key())}")
    mail = Mail(message=PLAIN)
    await signer.service(mail)
    await ctx.mailet(DKIMVerify).service(mail)
    assert mail.get_attribute(ATTR_DKIM_RESULTS)[0]["result"] == "permerror"


@pytest_twisted.ensureDeferred
async def test_dkim_verify_without_signature_says_none():
    ctx = MemoryContext(server_name="mx.b.test")
    mail = Mail(message=PLAIN)
    await ctx.mailet(DKIMVerify).service(mail)
    assert ar_headers(mail) == ["mx.b.test; dkim=none"]


@pytest_twisted.ensureDeferred
async def test_forged_authentication_results_with_our_authserv_id_is_removed():
    ctx = MemoryContext(server_name="mx.b.test")
    forged = (b"Authentication-Results: mx.b.test; dkim=pass header.d=bank.test\r\n"
              b"Authentication-Results: other.test; spf=pass smtp.mailfrom=a.test\r\n")
    mail = Mail(message=forged + PLAIN)
    await ctx.mailet(DKIMVerify).service(mail)
    assert ar_headers(mail) == ["other.test; spf=pass smtp.mailfrom=a.test",
                                "mx.b.test; dkim=none"]


@pytest_twisted.ensureDeferred
async def test_dkim_sign_leaves_mail_of_other_domains_unsigned(tmp_path):
    ctx = MemoryContext()
    signer = ctx.mailet(DKIMSign, keys=f"c.test:sel:{key_file(tmp_path, generate_key())}")
    mail = Mail(message=PLAIN)
    await signer.service(mail)
    assert mail.message_bytes() == PLAIN


def test_dkim_sign_refuses_a_bad_key_file_naming_it(tmp_path):
    path = tmp_path / "bad.key"
    path.write_bytes(b"not a key")
    with pytest.raises(ConfigurationError, match="bad.key"):
        MemoryContext().mailet(DKIMSign, keys=f"a.test:sel:{path}")


def test_dkim_sign_refuses_an_unknown_canonicalization(tmp_path):
    path = key_file(tmp_path, generate_key())
    with pytest.raises(ConfigurationError, match="canonicalization 'loose/simple'"):
        MemoryContext().mailet(DKIMSign, keys=f"a.test:sel:{path}",
                               canonicalization="loose/simple")


@pytest_twisted.ensureDeferred
async def test_dkim_verify_checks_at_most_max_signatures(tmp_path):
    key = generate_key()
    ctx = MemoryContext(dns={("sel._domainkey.a.test", "TXT"): [key.public_record().encode()]})
    signer = ctx.mailet(DKIMSign, keys=f"a.test:sel:{key_file(tmp_path, key)}")
    mail = Mail(message=PLAIN)
    for _ in range(4):
        await signer.service(mail)
    await ctx.mailet(DKIMVerify, maxSignatures="3").service(mail)
    assert [r["result"] for r in mail.get_attribute(ATTR_DKIM_RESULTS)] == ["pass"] * 3


@pytest_twisted.ensureDeferred
async def test_dns_questions_per_mail_are_bounded():
    from mailet_mta.api import TemporaryError
    from mailets.dns_replay import MAX_ROUNDS, run_with_dns

    ctx = MemoryContext()
    asked = []

    def endless(answers):
        asked.append(1)
        answers.get(f"n{len(asked)}.test", "TXT")       # always a new question

    with pytest.raises(TemporaryError, match=f"more than {MAX_ROUNDS} DNS lookups"):
        await run_with_dns(ctx, endless)
    assert len(ctx.dns_queries) == MAX_ROUNDS
