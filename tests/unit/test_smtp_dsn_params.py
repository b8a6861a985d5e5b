"""RFC 3461 ENVID and ORCPT values: xtext that decodes to printable US-ASCII only.

A value that decodes to CR, LF or another control character would be copied into the
delivery report DSNBounce builds later (``Original-Envelope-Id:``,
``Original-Recipient:``) and break it, so it is refused at MAIL/RCPT time with 501.
"""

from __future__ import annotations

import pytest

from mailet_mta.api import ATTR_DSN_ENVID, ATTR_DSN_RCPT
from tests.support.smtp_backend import FakeSession


def session(tmp_path):
    s = FakeSession(tmp_path)
    s.ehlo()
    return s


@pytest.mark.parametrize("envid", ["abc+0D+0ABcc:+20evil@example.net", "a+0Ab", "a+0Db",
                                   "a+00b", "a+7Fb", "a+80b", "a+09b", "a=b"])
def test_envid_with_control_characters_or_too_long_is_501(tmp_path, envid):
    s = session(tmp_path)
    reply = s.cmd(f"MAIL FROM:<x@remote.net> ENVID={envid}")
    assert reply.startswith("501 5.5.4"), reply
    assert "ENVID" in reply or "xtext" in reply


@pytest.mark.parametrize("orcpt", ["rfc822;a+0D+0Ab@example.com", "rfc822;a+0Ab@c",
                                   "rfc822;a+00@c", "rfc8(22;a@b.c"])
def test_orcpt_with_control_characters_bad_type_or_too_long_is_501(tmp_path, orcpt):
    s = session(tmp_path)
    assert s.cmd("MAIL FROM:<x@remote.net>").startswith("250")
    reply = s.cmd(f"RCPT TO:<alice@example.com> ORCPT={orcpt}")
    assert reply.startswith("501 5.5.4"), reply


def test_envid_and_orcpt_are_kept_up_to_their_length_limits_and_refused_past(tmp_path):
    s = session(tmp_path)
    envid = "e" * 97 + "+2B"
    orcpt = "rfc822;" + "a" * 486 + "+40b.cd"
    assert s.cmd(f"MAIL FROM:<x@remote.net> ENVID=e{envid}").startswith("501 5.5.4")
    assert s.cmd(f"MAIL FROM:<x@remote.net> ENVID={envid}").startswith("250")
    assert s.cmd(f"RCPT TO:<alice@example.com> ORCPT={orcpt}x").startswith("501 5.5.4")
    assert s.cmd(f"RCPT TO:<alice@example.com> ORCPT={orcpt}").startswith("250")
    s.send(b"DATA\r\nhi\r\n.\r\n")
    mail, _ = s.backend.accepted[0]
    assert mail.get_attribute(ATTR_DSN_ENVID) == "e" * 97 + "+"
    assert mail.get_attribute(ATTR_DSN_RCPT)["alice@example.com"]["orcpt"] == (
        "rfc822;" + "a" * 486 + "@b.cd")


def test_xtext_decoding_allows_space_but_no_line_break():
    from mailet_mta.smtp.params import CommandSyntaxError, parse_envid, parse_orcpt

    assert parse_envid("a+20b") == "a b"
    assert parse_orcpt("rfc822;x+2By@example.com") == "rfc822;x+y@example.com"
    with pytest.raises(CommandSyntaxError, match="printable US-ASCII"):
        parse_envid("a+0D+0A")
