"""IMAP sequence sets: parsing, message numbers, UIDs, compact UID sets."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailet_mta.imap.errors import BadCommand
from mailet_mta.imap.sequence import MAX_RANGES, format_uid_set, parse_set


def numbers(ranges):
    return [n for r in ranges for n in r]


def test_rfc3501_example_set():
    # RFC 3501 §9: in a mailbox of 15 messages, 2,4:7,9,12:* is 2,4,5,6,7,9,12,13,14,15
    s = parse_set("2,4:7,9,12:*")
    assert numbers(s.indexes(15)) == [2, 4, 5, 6, 7, 9, 12, 13, 14, 15]
    assert str(s) == "2,4:7,9,12:*"


def test_reversed_ranges_and_star_colon():
    assert numbers(parse_set("5:2").indexes(10)) == [2, 3, 4, 5]
    assert numbers(parse_set("*:8").indexes(10)) == [8, 9, 10]
    assert numbers(parse_set("*").indexes(10)) == [10]


def test_overlapping_members_name_each_message_once():
    assert numbers(parse_set("1:4,3:6,6,2").indexes(10)) == [1, 2, 3, 4, 5, 6]


def test_numbers_past_the_mailbox_are_left_out_and_reported():
    s = parse_set("8:12")
    assert numbers(s.indexes(10)) == [8, 9, 10]
    assert s.out_of_range(10)
    assert not parse_set("1:*").out_of_range(10)
    assert parse_set("1:*").out_of_range(0)
    assert parse_set("1:*").indexes(0) == []


@pytest.mark.parametrize("text", ["", "0", "1:0", "01", "1,", ",1", "1::2", "a", "1:2:3",
                                  "4294967296", "-1", "1 2", "$"])
def test_bad_sets(text):
    with pytest.raises(BadCommand):
        parse_set(text)


def test_largest_number():
    assert parse_set("4294967295").ranges == ((4294967295, 4294967295),)


def test_member_limit():
    parse_set(",".join(["1"] * MAX_RANGES))
    with pytest.raises(BadCommand, match="more than"):
        parse_set(",".join(["1"] * (MAX_RANGES + 1)))


def test_uid_indexes():
    uids = array("q", [3, 5, 9, 10, 20])
    assert parse_set("4:10").uid_indexes(uids) == [1, 2, 3]
    assert parse_set("*").uid_indexes(uids) == [4]
    assert parse_set("1:*").uid_indexes(uids) == [0, 1, 2, 3, 4]
    assert parse_set("11:19").uid_indexes(uids) == []
    assert parse_set("3,3:5").uid_indexes(uids) == [0, 1]


def test_uid_range_above_largest_still_names_the_last_message():
    # RFC 3501 §6.4.8: "UID range of 559:* always includes the UID of the last message"
    uids = array("q", [3, 5, 9])
    assert parse_set("559:*").uid_indexes(uids) == [2]
    assert parse_set("559:600").uid_indexes(uids) == []
    assert parse_set("1:*").uid_indexes(array("q")) == []


def test_contains():
    s = parse_set("2,4:7,12:*")
    match = s.matcher(15)
    assert [n for n in range(1, 17) if match(n)] == [2, 4, 5, 6, 7, 12, 13, 14, 15]
    assert s.contains(15, 15) and not s.contains(16, 15)


def test_format_uid_set():
    assert format_uid_set([9, 1, 2, 3, 7, 10]) == "1:3,7,9:10"
    assert format_uid_set([]) == ""
    assert format_uid_set([5, 5]) == "5"


def test_uid_indexes_of_a_large_set_is_fast():
    import time
    uids = array("q", range(1, 200_001, 2))
    s = parse_set(",".join(f"{n}:{n + 1}" for n in range(1, 100_000, 4)))
    t = time.perf_counter()
    found = s.uid_indexes(uids)
    assert time.perf_counter() - t < 2.0
    assert len(found) == 25_000


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=20))
def test_sequence_set_text_round_trips(ranges):
    text = ",".join(("*" if a == 0 else str(a)) + ("" if a == b else ":" + ("*" if b == 0
                    else str(b))) for a, b in ranges)
    s = parse_set(text)
    assert str(s) == text
    assert parse_set(str(s)) == s


@given(st.sets(st.integers(1, 10_000), max_size=200), st.integers(0, 10_050))
def test_format_uid_set_round_trips(uids, largest):
    text = format_uid_set(uids)
    if not uids:
        assert text == ""
        return
    assert set(numbers(parse_set(text).indexes(10_000))) == uids
    present = array("q", sorted(set(range(1, largest + 1, 3)) | uids))
    found = [present[i] for i in parse_set(text).uid_indexes(present)]
    assert found == sorted(uids)


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=10),
       st.lists(st.integers(1, 45), unique=True, max_size=30))
def test_uid_indexes_agree_with_membership(ranges, uid_list):
    text = ",".join(f"{a or '*'}:{b or '*'}" for a, b in ranges)
    uids = array("q", sorted(uid_list))
    s = parse_set(text)
    star = uids[-1] if uids else 0
    brute = [i for i, u in enumerate(uids)
             if any(min(a or star, b or star) <= u <= max(a or star, b or star)
                    for a, b in ranges)]
    assert s.uid_indexes(uids) == brute
    assert [i for i, u in enumerate(uids) if s.contains(u, star)] == brute
