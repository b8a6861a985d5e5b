"""SRS: the libsrs2 format through srslib, our checks of hash length and age, the
secret file's limits, the SRS mailet, and the directory's answer at RCPT."""

from __future__ import annotations

import time

import pytest

from mailet_mta.api import ConfigurationError, Mail, MailAddress
from mailet_mta.directory import Directory
from mailet_mta.testing import FakeMailContext
from mailets import sender_rewriting
from mailets.mailets.srs import ATTR_SRS, SRS
from mailets.rewrite_mappings import ErrorMapping
from mailets.sender_rewriting import (
    MAX_SECRET_FILE,
    MAX_SECRETS,
    SenderRewriting,
    SRSError,
    read_secrets,
)

SECRET = "a-secret-of-at-least-16-chars"
OLD_SECRET = "the-previous-secret-still-valid"


def addr(text: str) -> MailAddress:
    return MailAddress.parse(text)


def srs(**kw) -> SenderRewriting:
    return SenderRewriting([SECRET], "b.example", **kw)


def test_forward_makes_an_srs0_address_of_our_domain_that_reverses():
    rewritten = srs().forward(addr("alice@a.example"))
    assert rewritten.domain == "b.example"
    tag, hash_, ts, domain, local = rewritten.local_part.split("=")
    assert (tag, len(hash_), len(ts), domain, local) == ("SRS0", 4, 2, "a.example", "alice")
    assert srs().reverse(rewritten) == addr("alice@a.example")


def test_the_hash_is_libsrs2_s_hmac_sha1_base64():
    """The hash is the first 4 characters of base64(HMAC-SHA1(secret, lower(TT +
    domain + local))), so postsrsd with the same secret reverses our addresses."""
    import base64
    import hashlib
    import hmac

    rewritten = srs().forward(addr("Alice@A.example"))
    _tag, hash_, ts, domain, local = rewritten.local_part.split("=")
    digest = hmac.new(SECRET.encode(), (ts + domain + local).lower().encode(),
                      hashlib.sha1).digest()
    assert hash_ == base64.b64encode(digest)[:4].decode()


def test_an_srs0_sender_of_another_forwarder_becomes_srs1():
    first = SenderRewriting(["another-forwarder-secret-xx"], "fwd.example")
    srs0 = first.forward(addr("alice@a.example"))
    srs1 = srs().forward(srs0)
    assert srs1.local_part.startswith("SRS1=") and srs1.domain == "b.example"
    assert srs().reverse(srs1) == srs0          # bounces go back to the first forwarder
    assert first.reverse(srs().reverse(srs1)) == addr("alice@a.example")


def test_a_forged_hash_is_refused():
    good = srs().forward(addr("alice@a.example"))
    _tag, hash_, ts, domain, local = good.local_part.split("=")
    forged = MailAddress(f"SRS0={'AAAA' if hash_ != 'AAAA' else 'BBBB'}={ts}={domain}={local}",
                         "b.example")
    with pytest.raises(SRSError, match="hash"):
        srs().reverse(forged)
    other_target = MailAddress(f"SRS0={hash_}={ts}={domain}=mallory", "b.example")
    with pytest.raises(SRSError, match="hash"):
        srs().reverse(other_target)


def test_a_short_hash_is_refused_before_srslib_which_would_compare_its_prefix():
    good = srs().forward(addr("alice@a.example"))
    _tag, hash_, ts, domain, local = good.local_part.split("=")
    for n in range(1, 4):
        short = MailAddress(f"SRS0={hash_[:n]}={ts}={domain}={local}", "b.example")
        with pytest.raises(SRSError, match="too short"):
            srs().reverse(short)


def test_an_address_older_than_max_age_is_refused():
    old = srs()
    old._srs._time_fn = lambda: time.time() - 22 * 86400   # made 22 days ago
    rewritten = old.forward(addr("alice@a.example"))
    with pytest.raises(SRSError, match="expired"):
        srs().reverse(rewritten)                           # maxAge 21 days
    assert srs(max_age_days=30).reverse(rewritten) == addr("alice@a.example")


def test_an_address_made_with_the_previous_secret_still_reverses():
    before = SenderRewriting([OLD_SECRET], "b.example").forward(addr("alice@a.example"))
    rotated = SenderRewriting([SECRET, OLD_SECRET], "b.example")
    assert rotated.reverse(before) == addr("alice@a.example")
    with pytest.raises(SRSError):
        srs().reverse(before)


def test_the_secret_file_limits(tmp_path):
    path = tmp_path / "srs.secret"
    path.write_text(f"# comment\n{SECRET}\n{OLD_SECRET}\n")
    assert read_secrets(path) == [SECRET, OLD_SECRET]
    path.write_text("short\n")
    with pytest.raises(ValueError, match="shorter than 16"):
        read_secrets(path)
    path.write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="no secret"):
        read_secrets(path)
    path.write_text("".join(f"{SECRET}{i}\n" for i in range(MAX_SECRETS + 1)))
    with pytest.raises(ValueError, match=f"more than {MAX_SECRETS}"):
        read_secrets(path)
    path.write_bytes(b"x" * (MAX_SECRET_FILE + 1))
    with pytest.raises(ValueError, match="larger than"):
        read_secrets(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_secrets(tmp_path / "missing")


def test_parameter_bounds():
    with pytest.raises(ValueError, match="hashLength"):
        srs(hash_length=3)
    with pytest.raises(ValueError, match="maxAge"):
        srs(max_age_days=1024)


def secret_file(tmp_path) -> str:
    path = tmp_path / "srs.secret"
    path.write_text(SECRET + "\n")
    return str(path)


def test_the_mailet_rewrites_a_foreign_sender_and_keeps_ours(tmp_path):
    ctx = FakeMailContext(domains=["b.example"], server_name="b.example")
    mailet = ctx.mailet(SRS, secretFile=secret_file(tmp_path))
    foreign = Mail(sender=addr("alice@a.example"), recipients=[addr("carol@c.example")])
    mailet.service(foreign)
    assert foreign.sender.local_part.startswith("SRS0=")
    assert foreign.sender.domain == "b.example"
    assert foreign.get_attribute(ATTR_SRS) == "alice@a.example"
    ours = Mail(sender=addr("bob@b.example"), recipients=[addr("carol@c.example")])
    mailet.service(ours)
    assert ours.sender == addr("bob@b.example")
    bounce = Mail(sender=None, recipients=[addr("carol@c.example")])
    mailet.service(bounce)
    assert bounce.sender is None


def test_the_mailet_refuses_a_missing_secret_or_bad_parameters(tmp_path):
    ctx = FakeMailContext(domains=["b.example"], server_name="b.example")
    with pytest.raises(ConfigurationError, match="secretFile"):
        ctx.mailet(SRS)
    with pytest.raises(ConfigurationError, match="not a domain"):
        ctx.mailet(SRS, secretFile=secret_file(tmp_path), domain="bad domain")
    with pytest.raises(ConfigurationError, match="maxAge must be an integer"):
        ctx.mailet(SRS, secretFile=secret_file(tmp_path), maxAge="soon")
    with pytest.raises(ConfigurationError, match="hashLength"):
        ctx.mailet(SRS, secretFile=secret_file(tmp_path), hashLength="2")


def test_the_directory_accepts_a_valid_srs_address_and_refuses_a_forged_one(tmp_path):
    rewriting = sender_rewriting.SenderRewriting([SECRET], "b.example")
    directory = Directory(None, ["b.example"], "postmaster@b.example", srs=rewriting)
    good = rewriting.forward(addr("alice@a.example"))
    assert directory.is_local_email(good)                 # RCPT: 250
    assert directory.resolve(good) == [addr("alice@a.example")]
    _tag, _hash, ts, domain, local = good.local_part.split("=")
    forged = MailAddress(f"SRS0=ZZZZ={ts}={domain}={local}", "b.example")
    assert not directory.is_local_email(forged)
    assert directory.refusal_of(forged)[:2] == (550, "5.7.1")   # RCPT: 550 5.7.1
    with pytest.raises(ErrorMapping):
        directory.resolve(forged)
    # Without SRS configured, the same address is just an unknown user.
    plain = Directory(None, ["b.example"], "postmaster@b.example")
    assert not plain.is_local_email(good) and plain.refusal_of(good) is None


def test_a_sender_too_long_for_its_srs_form_is_kept(tmp_path):
    """The SRS local part carries the original local part and domain; past RFC 5321's
    64 octets it would not be a valid address, so the sender stays as it was."""
    ctx = FakeMailContext(domains=["b.example"], server_name="b.example")
    mailet = ctx.mailet(SRS, secretFile=secret_file(tmp_path))
    long_sender = addr(f"{'x' * 50}@a-rather-long-domain.example")
    mail = Mail(sender=long_sender, recipients=[addr("carol@c.example")])
    mailet.service(mail)
    assert mail.sender == long_sender and mail.get_attribute(ATTR_SRS) is None
