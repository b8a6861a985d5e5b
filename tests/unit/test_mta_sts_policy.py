"""MTA-STS policy text, TXT record and MX pattern rules (RFC 8461 §3.1, §3.2, §4.1)."""

from __future__ import annotations

import pytest

from mailet_mta.delivery.mta_sts import (
    MAX_AGE_LIMIT,
    MAX_MX_PATTERNS,
    PolicyError,
    mx_matches,
    parse_policy,
    record_id,
)

POLICY = ("version: STSv1\r\nmode: enforce\r\nmx: mx1.a.test\r\nmx: *.mx.a.test\r\n"
          "max_age: 86400\r\n")


def test_policy_fields_are_read():
    policy = parse_policy("a.test", "20261203", POLICY, now=1000.0)
    assert (policy.mode, policy.mx, policy.max_age) == (
        "enforce", ("mx1.a.test", "*.mx.a.test"), 86400)
    assert policy.expires_at == 1000.0 + 86400
    assert policy.allows("MX1.a.test.") and policy.allows("b.mx.a.test")
    assert not policy.allows("mx2.a.test")


def test_wildcard_matches_exactly_one_leftmost_label():
    assert mx_matches("*.mx.a.test", "one.mx.a.test")
    assert not mx_matches("*.mx.a.test", "two.one.mx.a.test")
    assert not mx_matches("*.mx.a.test", "mx.a.test")


@pytest.mark.parametrize("text, error", [
    ("mode: enforce\nmx: m.a.test\nmax_age: 1\n", "version is not STSv1"),
    ("version: STSv1\nmode: strict\nmx: m.a.test\nmax_age: 1\n", "mode 'strict'"),
    ("version: STSv1\nmode: enforce\nmx: m.a.test\nmax_age: soon\n", "max_age"),
    ("version: STSv1\nmode: enforce\nmax_age: 1\n", "without mx"),
    ("version: STSv1\nmode enforce\n", "is not key: value"),
])
def test_invalid_policies_are_refused(text, error):
    with pytest.raises(PolicyError, match=error):
        parse_policy("a.test", "1", text, now=0)


def test_mx_lines_beyond_the_limit_are_refused():
    text = "version: STSv1\nmode: enforce\nmax_age: 60\n" + \
        "".join(f"mx: m{i}.a.test\n" for i in range(MAX_MX_PATTERNS + 1))
    with pytest.raises(PolicyError, match=f"more than {MAX_MX_PATTERNS} mx"):
        parse_policy("a.test", "1", text, now=0)


def test_max_age_is_capped_at_one_year():
    text = "version: STSv1\nmode: testing\nmx: m.a.test\nmax_age: 999999999\n"
    assert parse_policy("a.test", "1", text, now=0).max_age == MAX_AGE_LIMIT


def test_txt_record_id():
    assert record_id([b"v=STSv1; id=20261203T1;"]) == "20261203T1"
    assert record_id([b"v=spf1 -all", b"v=STSv1; id=abc"]) == "abc"
    assert record_id([b"v=STSv1; id=1", b"v=STSv1; id=2"]) is None      # several: none
    assert record_id([b"v=STSv1; id=no-dashes"]) is None                 # 1*32 alnum
    assert record_id([b"v=STSv1"]) is None
    assert record_id([]) is None
