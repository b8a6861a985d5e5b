"""The address parser and the MAIL/RCPT argument parser under random input.

Any text gives a MailAddress or MailAddressError / CommandSyntaxError — no other
exception. A parsed address round-trips through ``str()``, keeps the RFC 5321 limits,
holds no whitespace or control character outside a quoted local part, and never
carries a second routing ``@`` outside quotes (the relay tricks ``user@a@b`` and source
routes are refused at parse time).
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from mailet_mta.address import MAX_LOCAL_PART, MailAddress, MailAddressError, parse_path
from mailet_mta.smtp.params import (
    CommandSyntaxError,
    parse_forward_path,
    parse_notify,
    parse_orcpt,
    parse_reverse_path,
    split_path_and_params,
    xtext_decode,
)
from tests.fuzz.replies import FUZZ_SETTINGS
from tests.support.examples import examples

EXAMPLES = int(os.environ.get("MAILET_MTA_FUZZ_EXAMPLES", examples(40))) * 3
PIECES = st.sampled_from(["a", "b", ".", "@", "%", "!", ":", ",", "\"", "\\", "<", ">",
                          "[", "]", "IPv6:", "::1", "127.0.0.1", " ", "\t", "\r", "\n",
                          "\x00", "é", "ü", "xn--", "-", "example.com", "postmaster",
                          "=", "+", "(", ")", ";", "\u2028", "\ufeff"])
ADDRESS_LIKE = st.one_of(st.lists(PIECES, max_size=20).map("".join), st.text(max_size=80))


def check_address(addr: MailAddress) -> None:
    assert MailAddress.parse(str(addr)) == addr
    assert len(addr.local_part.encode()) <= MAX_LOCAL_PART
    assert len(addr.domain) <= 255
    assert addr.domain == addr.domain.lower() and addr.domain.isascii()
    if not addr.is_quoted:
        assert "@" not in addr.local_part
        assert not any(ch.isspace() or ord(ch) < 32 for ch in addr.local_part)
    assert not any(ord(ch) < 32 or ch == "\x7f" for ch in str(addr)), repr(addr)


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(ADDRESS_LIKE)
def test_mail_address_parse_returns_a_checked_address_or_mail_address_error(text):
    try:
        addr = MailAddress.parse(text)
    except MailAddressError:
        return
    check_address(addr)


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(ADDRESS_LIKE, st.booleans(), st.booleans())
def test_parse_path_refuses_source_routes_unless_asked(text, null, route):
    path = f"<{text}>"
    try:
        addr = parse_path(path, allow_null=null, allow_source_route=route)
    except MailAddressError:
        return
    if addr is None:
        assert null and text.strip() == ""
        return
    check_address(addr)
    if not route:
        assert not text.strip().startswith("@")


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(st.sampled_from(["FROM", "TO"]), ADDRESS_LIKE,
       st.lists(st.sampled_from(["SIZE=1", "SIZE=", "BODY=8BITMIME", "SMTPUTF8", "=",
                                 "NOTIFY=SUCCESS,FAILURE", "NOTIFY=NEVER,SUCCESS",
                                 "ORCPT=rfc822;a+2Bb@c", "ORCPT=x", "ENVID=a+ZZ", "A=B=C"]),
                max_size=4))
def test_mail_and_rcpt_arguments_parse_or_raise_syntax_errors_only(keyword, text, params):
    arg = f"{keyword}:<{text}> " + " ".join(params)
    try:
        path, parsed = split_path_and_params(arg, keyword)
        addr = (parse_reverse_path(path) if keyword == "FROM"
                else parse_forward_path(path, "mx.example.com"))
        for key, value in parsed.items():
            if key == "NOTIFY":
                parse_notify(value)
            elif key == "ORCPT":
                parse_orcpt(value)
            elif key == "ENVID":
                xtext_decode(value or "")
    except (CommandSyntaxError, MailAddressError):
        return
    if addr is not None:
        check_address(addr)


def test_source_route_is_discarded_so_policy_sees_the_final_destination():
    # RFC 5321 §3.6.1/§C: accept and ignore the route; relay policy then judges the
    # real destination, not the first hop the client named.
    assert parse_forward_path("<@example.com:victim@remote.example>", "mx.example.com") \
        == MailAddress("victim", "remote.example")
    assert parse_forward_path("<@a,@b:c@d>", "mx.example.com") == MailAddress("c", "d")


def test_relay_tricks_with_several_at_signs_are_refused_by_the_parser():
    for path in ["<user@a@b>", "<victim@remote.example@example.com>",
                 "<a@b@[127.0.0.1]>"]:
        try:
            parse_forward_path(path, "mx.example.com")
        except MailAddressError:
            continue
        raise AssertionError(f"{path} parsed")
