"""IMAP wire forms: strings, mailbox names (modified UTF-7), flags and dates."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailet_mta.imap.encoding import (
    astring_to_str,
    decode_mailbox,
    encode_mailbox,
    format_flags,
    format_internal_date,
    nstring,
    parse_date,
    parse_date_time,
    quoted_or_literal,
)
from mailet_mta.imap.errors import BadCommand


def test_quoted_string_escapes_quote_and_backslash():
    assert quoted_or_literal(b'a "b" \\c') == b'"a \\"b\\" \\\\c"'


@pytest.mark.parametrize("data", [b"a\r\nb", b"caf\xc3\xa9", b"nul\x00", b"x" * 1000])
def test_unquotable_data_is_a_literal(data):
    assert quoted_or_literal(data) == b"{%d}\r\n" % len(data) + data


def test_999_octets_are_still_quoted():
    assert quoted_or_literal(b"x" * 999).startswith(b'"')


def test_nstring_nil():
    assert nstring(None) == b"NIL"
    assert nstring(b"") == b'""'


def test_astring_to_str():
    assert astring_to_str("INBOX") == "INBOX"
    assert astring_to_str("caf\u00e9".encode()) == "caf\u00e9"
    with pytest.raises(BadCommand):
        astring_to_str(b"\xff")
    with pytest.raises(BadCommand):
        astring_to_str(["a"])


def test_rfc3501_modified_utf7_example():
    # RFC 3501 §5.1.3
    wire = b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    name = "~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e"
    assert encode_mailbox(name, utf8=False) == wire
    assert decode_mailbox(wire, utf8=False) == name
    assert decode_mailbox(wire.decode(), utf8=False) == name


def test_ampersand_is_shifted_as_amp_dash():
    assert encode_mailbox("R&D", utf8=False) == b"R&-D"
    assert decode_mailbox(b"R&-D", utf8=False) == "R&D"


@pytest.mark.parametrize("wire", [b"&Jjo", b"a&", b"&AGE-", b"&U,BTF2-", b"caf\xc3\xa9",
                                  b"&2D3cAA-x&Jj-", b"a\rb"])
def test_invalid_modified_utf7_is_bad(wire):
    # unterminated, printable ASCII encoded, stray padding bits, 8-bit, odd lengths, CR
    with pytest.raises(BadCommand):
        decode_mailbox(wire, utf8=False)


def test_utf8_mailbox_names_after_utf8_accept():
    assert encode_mailbox("Caf\u00e9", utf8=True) == "Caf\u00e9".encode()
    assert decode_mailbox("Caf\u00e9".encode(), utf8=True) == "Caf\u00e9"
    with pytest.raises(BadCommand):
        decode_mailbox(b"\xff", utf8=True)


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00")))
def test_modified_utf7_round_trips(name):
    wire = encode_mailbox(name, utf8=False)
    assert all(0x20 <= b <= 0x7e for b in wire)
    assert decode_mailbox(wire, utf8=False) == name


def test_format_flags():
    assert format_flags(frozenset({"foo", "\\Seen", "\\Answered"})) == b"(\\Answered \\Seen foo)"
    assert format_flags(()) == b"()"


def test_internal_date_rfc3501_form():
    epoch = parse_date_time(b"17-Jul-1996 02:44:25 -0700")
    assert epoch == datetime.datetime(1996, 7, 17, 9, 44, 25,
                                      tzinfo=datetime.UTC).timestamp()
    assert format_internal_date(epoch, -420) == b'"17-Jul-1996 02:44:25 -0700"'
    assert format_internal_date(epoch) == b'"17-Jul-1996 09:44:25 +0000"'
    assert format_internal_date(epoch - 16 * 86400) == b'" 1-Jul-1996 09:44:25 +0000"'


def test_parse_date_time_accepts_space_padded_day():
    assert parse_date_time(b" 1-Jan-2000 00:00:00 +0000") == 946684800.0


@pytest.mark.parametrize("text", [b"17-Jul-1996 02:44:25", b"32-Jul-1996 02:44:25 +0000",
                                  b"17-Foo-1996 02:44:25 +0000", b"17-Jul-1996 02:44:25 +0070",
                                  b"yesterday"])
def test_bad_date_time(text):
    with pytest.raises(BadCommand):
        parse_date_time(text)


def test_parse_date():
    assert parse_date("1-Feb-1994") == datetime.date(1994, 2, 1)
    assert parse_date(b"01-feb-1994") == datetime.date(1994, 2, 1)
    for bad in ("1994-02-01", "30-Feb-1994", ["1-Feb-1994"]):
        with pytest.raises(BadCommand):
            parse_date(bad)


def test_internal_date_out_of_range_is_clamped():
    assert format_internal_date(-5.0) == b'" 1-Jan-1970 00:00:00 +0000"'
    assert format_internal_date(1e300, 14 * 60).startswith(b'"31-Dec-9999')


def test_non_ascii_atom_mailbox_names():
    assert decode_mailbox("Caf\u00e9", utf8=True) == "Caf\u00e9"
    with pytest.raises(BadCommand):
        decode_mailbox("Caf\u00e9", utf8=False)


def test_internal_dates_of_a_column_equal_one_by_one():
    from mailet_mta.imap.encoding import format_internal_date, format_internal_dates

    epochs = [0.0, 59.9, 60.0, 86399.0, 86400.0, 951782400.0, 1.7e9 + 0.5, -5.0, 3e11,
              253402214399.0, 1.7e9, 1.7e9 + 61]
    assert format_internal_dates(epochs) == [format_internal_date(e) for e in epochs]


def test_internal_dates_table_is_bounded():
    from mailet_mta.imap.encoding import format_internal_date, format_internal_dates

    epochs = [60.0 * n + 7 for n in range(65536 + 3)]       # more minutes than the table
    out = format_internal_dates(epochs)
    assert out[-1] == format_internal_date(epochs[-1])
    assert out[65536] == format_internal_date(epochs[65536])


def test_internal_date_in_a_zone():
    from mailet_mta.imap.encoding import format_internal_date

    assert format_internal_date(0.0, -420) == b'"31-Dec-1969 17:00:00 -0700"'
    assert format_internal_date(837596665.0, -420) == b'"17-Jul-1996 02:44:25 -0700"'
    assert format_internal_date(837596665.0, 330) == b'"17-Jul-1996 15:14:25 +0530"'
