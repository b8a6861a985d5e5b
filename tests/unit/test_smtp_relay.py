"""Relay policy (James's authRequired / authorizedAddresses / verifyIdentity) and the
classic open-relay tricks, at RCPT and MAIL."""

from __future__ import annotations

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config.model import SMTPServerConfig
from mailet_mta.smtp.relay_policy import RelayPolicy, ip_in, parse_networks
from tests.support.smtp_backend import FakeSession

OUTSIDE = "203.0.113.5"
INSIDE = "192.0.2.7"


def rcpt(tmp_path, address, peer=OUTSIDE, login=False, **kw) -> str:
    s = FakeSession(tmp_path, peer=peer, **kw)
    s.ehlo()
    if login:
        assert s.login().startswith("235")
    sender = "alice@example.com" if login else "x@remote.net"
    assert s.cmd(f"MAIL FROM:<{sender}>").startswith("250")
    return s.cmd(f"RCPT TO:{address}")


def test_rcpt_to_remote_domain_without_auth_is_auth_required_when_auth_offered(tmp_path):
    assert rcpt(tmp_path, "<v@far.net>") == "530 5.7.1 Authentication required"


def test_rcpt_to_remote_domain_without_auth_is_relay_denied_when_auth_false(tmp_path):
    assert rcpt(tmp_path, "<v@far.net>", auth_required="false") == \
        "550 5.7.1 <v@far.net>: Relaying denied"


def test_rcpt_to_remote_domain_from_authorized_network_is_relayed(tmp_path):
    assert rcpt(tmp_path, "<v@far.net>", peer=INSIDE).startswith("250")


def test_rcpt_to_remote_domain_from_authorized_ipv6_network_is_relayed(tmp_path):
    assert rcpt(tmp_path, "<v@far.net>", peer="2001:db8::9",
                authorized_addresses=["2001:db8::/32"]).startswith("250")


def test_rcpt_to_remote_domain_after_auth_is_relayed(tmp_path):
    assert rcpt(tmp_path, "<v@far.net>", login=True).startswith("250")


def test_rcpt_to_local_user_from_anywhere_is_accepted(tmp_path):
    assert rcpt(tmp_path, "<alice@example.com>").startswith("250")


def test_postmaster_of_every_local_domain_is_accepted(tmp_path):
    assert rcpt(tmp_path, "<postmaster@example.org>").startswith("250")
    assert rcpt(tmp_path, "<PostMaster@EXAMPLE.com>").startswith("250")


def test_bare_postmaster_is_accepted(tmp_path):
    assert rcpt(tmp_path, "<postmaster>").startswith("250 2.1.5 Recipient "
                                                     "<postmaster@mx.example.com>")


def test_unknown_local_user_accepted_when_not_rejecting(tmp_path):
    assert rcpt(tmp_path, "<nobody@example.com>",
                reject_unknown_local_users=False).startswith("250")


@pytest.mark.parametrize("address", [
    "<user%far.net@example.com>",        # percent hack
    '<"user@far.net"@example.com>',      # quoted local part holding @
    "<far.net!user@example.com>",        # bang path
])
def test_open_relay_trick_is_a_local_unknown_user(tmp_path, address):
    assert rcpt(tmp_path, address).startswith("550 5.1.1")


@pytest.mark.parametrize("address", [
    "<user%far.net@example.com>", '<"user@far.net"@example.com>',
    "<far.net!user@example.com>"])
def test_open_relay_trick_is_never_relayed_even_when_accepted(tmp_path, address):
    s = FakeSession(tmp_path, reject_unknown_local_users=False)
    s.ehlo()
    s.cmd("MAIL FROM:<x@remote.net>")
    assert s.cmd(f"RCPT TO:{address}").startswith("250")
    assert all(r.domain == "example.com" for r in s.proto.envelope.recipients)


def test_source_route_is_reduced_to_the_final_address_and_denied(tmp_path):
    assert rcpt(tmp_path, "<@example.com:user@far.net>") == \
        "530 5.7.1 Authentication required"


def test_double_at_is_refused(tmp_path):
    assert rcpt(tmp_path, "<user@far.net@example.com>").startswith("553 5.1.3")


def test_ip_literal_of_another_host_is_remote(tmp_path):
    assert rcpt(tmp_path, "<alice@[1.2.3.4]>").startswith("530 5.7.1")


def test_ip_literal_of_this_host_is_local(tmp_path):
    assert rcpt(tmp_path, "<postmaster@[198.51.100.25]>").startswith("250")
    assert rcpt(tmp_path, "<nobody@[198.51.100.25]>").startswith("550 5.1.1")


def test_trailing_dot_domain_is_refused(tmp_path):
    assert rcpt(tmp_path, "<alice@example.com.>").startswith("553 5.1.3")


def test_mixed_case_local_domain_is_local(tmp_path):
    assert rcpt(tmp_path, "<alice@ExAmPlE.CoM>").startswith("250")


# -- verifyIdentity ------------------------------------------------------------------
def mail_from(tmp_path, sender, login=True, peer=OUTSIDE, **kw) -> str:
    s = FakeSession(tmp_path, peer=peer, **kw)
    s.ehlo()
    if login:
        s.login()
    return s.cmd(f"MAIL FROM:<{sender}>")


def test_strict_authenticated_user_may_use_own_addresses_and_aliases(tmp_path):
    assert mail_from(tmp_path, "alice@example.com").startswith("250")
    assert mail_from(tmp_path, "info@example.com").startswith("250")


def test_strict_authenticated_user_may_not_use_another_local_address(tmp_path):
    assert mail_from(tmp_path, "bob@example.com").startswith("553 5.7.1")


def test_strict_authenticated_user_may_use_a_remote_sender(tmp_path):
    assert mail_from(tmp_path, "alice@gmail.example").startswith("250")


def test_strict_unauthenticated_local_sender_from_outside_needs_auth(tmp_path):
    assert mail_from(tmp_path, "bob@example.com", login=False).startswith("530 5.7.1")


def test_strict_unauthenticated_local_sender_from_authorized_network_is_ok(tmp_path):
    assert mail_from(tmp_path, "bob@example.com", login=False, peer=INSIDE).startswith("250")


def test_relaxed_allows_unauthenticated_local_sender(tmp_path):
    assert mail_from(tmp_path, "bob@example.com", login=False,
                     verify_identity="relaxed").startswith("250")
    assert mail_from(tmp_path, "bob@example.com",
                     verify_identity="relaxed").startswith("553 5.7.1")


def test_verify_identity_false_allows_any_sender(tmp_path):
    assert mail_from(tmp_path, "bob@example.com", verify_identity="false").startswith("250")


def test_null_sender_is_always_allowed(tmp_path):
    assert mail_from(tmp_path, "", login=False).startswith("250 2.1.0 Sender <> OK")


# -- policy pieces -------------------------------------------------------------------
def test_authorized_addresses_accept_cidr_and_plain_addresses():
    nets = parse_networks(["10.0.0.0/8", "::1", "192.0.2.1"])
    assert ip_in("10.1.2.3", nets) and ip_in("::1", nets) and ip_in("192.0.2.1", nets)
    assert ip_in("::ffff:10.0.0.1", nets) and not ip_in("192.0.2.2", nets)


def test_bad_authorized_address_names_the_key():
    with pytest.raises(ConfigurationError, match="authorizedAddresses: 'nope'"):
        parse_networks(["nope"])


def test_bad_auth_required_value_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="authRequired"):
        RelayPolicy(SMTPServerConfig(auth_required="maybe"))
