"""The maildrop read at login: LIST/UIDL lines rendered once, deleted ones left out."""

from __future__ import annotations

from mailet_mta.mailstore import MessageList

ROWS = [(17, 1, "aa", 120), (9, 2, "bb", 5), (30, 5, "cc", 10_000)]


def test_lines_are_numbered_by_position_not_by_uid_or_row_id():
    drop = MessageList([ROWS])
    assert drop.list_lines == [b"1 120\r\n", b"2 5\r\n", b"3 10000\r\n"]
    assert drop.uidl_lines == [b"1 aa\r\n", b"2 bb\r\n", b"3 cc\r\n"]
    assert list(drop.ids) == [17, 9, 30] and list(drop.sizes) == [120, 5, 10_000]
    assert len(drop) == 3 and drop.octets == 10_125


def test_numbering_runs_on_across_chunks():
    drop = MessageList([ROWS[:2], [], ROWS[2:]])
    assert drop.list_lines == MessageList([ROWS]).list_lines
    assert drop.uidl_lines[2] == b"3 cc\r\n" and list(drop.ids) == [17, 9, 30]


def test_listing_leaves_out_exactly_the_deleted_indexes():
    drop = MessageList([ROWS])
    assert drop.listing(drop.list_lines, set()) == b"1 120\r\n2 5\r\n3 10000\r\n"
    assert drop.listing(drop.list_lines, {1}) == b"1 120\r\n3 10000\r\n"
    assert drop.listing(drop.uidl_lines, {0, 2}) == b"2 bb\r\n"
    assert drop.listing(drop.uidl_lines, {0, 1, 2}) == b""


def test_an_empty_maildrop():
    drop = MessageList()
    assert len(drop) == 0 and drop.octets == 0
    assert drop.listing(drop.list_lines, set()) == b""
