"""QRESYNC's parameters and VANISHED sets (RFC 7162 §3.2), and the session's answers
to them over the in-memory store."""

from __future__ import annotations

import re
from array import array

import pytest

from mailet_mta.imap.errors import BadCommand
from mailet_mta.imap.parser import CommandReader
from mailet_mta.imap.qresync import (
    MAX_SEQ_MATCH_PAIRS,
    format_spans,
    parse_fetch_modifiers,
    parse_qresync,
    vanished_spans,
)
from mailet_mta.imap.sequence import parse_set
from tests.unit.imap_memory_store import MemoryIMAPStore
from tests.unit.test_imap_protocol import MESSAGE, Session


def _param(text: str):
    """The QRESYNC list of ``SELECT INBOX (QRESYNC <text>)`` as the reader gives it."""
    reader = CommandReader()
    reader.feed(f"s SELECT INBOX (QRESYNC {text})\r\n".encode())
    return reader.next_event().args[1][1]


def test_qresync_uidvalidity_and_modseq_only():
    params = parse_qresync(_param("(67890007 90060115194045000)"))
    assert (params.uid_validity, params.modseq) == (67890007, 90060115194045000)
    assert params.known_uids is None and params.seq_match is None


def test_qresync_with_known_uids():
    params = parse_qresync(_param("(1 2 41,43:211,214:541)"))
    assert str(params.known_uids) == "41,43:211,214:541"
    assert params.seq_match is None


def test_qresync_with_known_uids_and_seq_match_data():
    params = parse_qresync(_param("(1 2 1:100 (1,10,20 3,30,60))"))
    assert str(params.known_uids) == "1:100"
    seqs, uids = params.seq_match
    assert (str(seqs), str(uids)) == ("1,10,20", "3,30,60")


def test_qresync_with_seq_match_data_and_no_known_uids():
    params = parse_qresync(_param("(1 2 (1:3 5:7))"))
    assert params.known_uids is None
    assert tuple(map(str, params.seq_match)) == ("1:3", "5:7")


@pytest.mark.parametrize("text", [
    "(0 1)",                          # uidvalidity is nz-number
    "(4294967296 1)",                 # … of 32 bits
    "(1 0)",                          # mod-sequence-value is positive
    "(1 9223372036854775808)",        # … of 63 bits
    "(1 123456789012345678901234567890)",
    "(1)",
    "(1 2 3 (1 1) 4)",
    "(1 2 1:*)",                      # * is not allowed in known-uids
    "(1 2 1:5 (1:* 1:5))",
    "(1 2 1:5 (1,2 3))",              # the two sets name different numbers of messages
    "(1 2 1:5 (1 2 3))",
    "(1 2 1:5 1:5)",
    "(a 2)",
    "1",
])
def test_malformed_qresync_parameters_are_bad(text):
    with pytest.raises(BadCommand):
        parse_qresync(_param(text))


def test_fetch_modifiers_in_either_order():
    assert parse_fetch_modifiers(["CHANGEDSINCE", "7", "VANISHED"], True, True) == (7, True)
    assert parse_fetch_modifiers(["vanished", "changedsince", "7"], True, True) == (7, True)
    assert parse_fetch_modifiers(["CHANGEDSINCE", "0"], False, False) == (0, False)


@pytest.mark.parametrize("modifiers,uid,qresync", [
    (["VANISHED"], True, True),                            # without CHANGEDSINCE
    (["CHANGEDSINCE", "7", "VANISHED"], False, True),      # not a UID FETCH
    (["CHANGEDSINCE", "7", "VANISHED"], True, False),      # QRESYNC not enabled
    (["CHANGEDSINCE", "7", "CHANGEDSINCE", "8"], True, True),
    (["CHANGEDSINCE", "7", "VANISHED", "VANISHED"], True, True),
    (["CHANGEDSINCE"], True, True),
    (["CHANGEDSINCE", "99999999999999999999"], True, True),
    (["FROB", "1"], True, True),
    ("CHANGEDSINCE", True, True),
])
def test_bad_fetch_modifiers(modifiers, uid, qresync):
    with pytest.raises(BadCommand):
        parse_fetch_modifiers(modifiers, uid, qresync)


def test_vanished_from_tombstones_is_limited_to_the_known_uids():
    present = array("q", [1, 2, 6])
    assert vanished_spans([3, 4, 5, 9], present, 10, None) == [(3, 5), (9, 9)]
    assert vanished_spans([3, 4, 5, 9], present, 10, parse_set("1:4")) == [(3, 4)]
    assert vanished_spans([], present, 10, None) == []


def test_vanished_without_tombstones_is_every_known_uid_not_present():
    present = array("q", [2, 5, 6, 9])
    assert vanished_spans(None, present, 12, None) == [(1, 1), (3, 4), (7, 8), (10, 11)]
    assert vanished_spans(None, present, 12, parse_set("4:7,11")) == [(4, 4), (7, 7),
                                                                       (11, 11)]
    assert vanished_spans(None, array("q"), 1, None) == []


def test_vanished_without_tombstones_in_a_huge_uid_space_is_told_by_ranges():
    present = array("q", [4_000_000_000])
    spans = vanished_spans(None, present, 4_000_000_002, None)
    assert format_spans(spans) == b"1:3999999999,4000000001"


def test_seq_match_data_prove_nothing_went_below_a_matching_pair():
    # the client had UIDs 1 and 3..10 at sequence numbers 1..9; 8 went since
    present = array("q", [1, 3, 4, 5, 6, 7, 9, 10])
    assert vanished_spans(None, present, 11, None) == [(2, 2), (8, 8)]
    match = (parse_set("2,5"), parse_set("3,6"))        # both still where they were
    assert vanished_spans(None, present, 11, None, match) == [(8, 8)]
    match = (parse_set("2,9"), parse_set("3,10"))       # seq 9 is past the end now
    assert vanished_spans(None, present, 11, None, match) == [(8, 8)]
    match = (parse_set("7"), parse_set("8"))            # seq 7 is now UID 9
    assert vanished_spans(None, present, 11, None, match) == [(2, 2), (8, 8)]


def test_seq_match_data_pairs_are_bounded():
    many = f"1:{MAX_SEQ_MATCH_PAIRS * 10}"
    params = parse_qresync(_param(f"(1 2 ({many} {many}))"))
    present = array("q", range(1, 11))
    assert vanished_spans(None, present, 12, None, params.seq_match) == [(11, 11)]


def _qresync_session():
    store = MemoryIMAPStore()
    msgs = [store.add("bob@example.com", MESSAGE) for _ in range(4)]
    s = Session(store)
    s.login()
    assert s.cmd("e ENABLE QRESYNC").startswith(b"* ENABLED QRESYNC\r\n")
    return s, store, msgs


def test_store_after_enable_qresync_tells_uid_and_modseq():
    s, _store, _msgs = _qresync_session()
    s.cmd("s SELECT INBOX")
    out = s.cmd("t STORE 2 +FLAGS (\\Flagged)")
    assert re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)\r\n", out)


def test_fetch_that_sets_seen_after_enable_qresync_tells_uid_and_modseq():
    s, _store, _msgs = _qresync_session()
    s.cmd("s SELECT INBOX")
    out = s.cmd("f FETCH 3 BODY[TEXT]")
    assert out.startswith(b"* 3 FETCH (UID 3 BODY[TEXT] {11}\r\nbody line\r\n")
    assert re.search(rb"FLAGS \(\\Seen\) MODSEQ \(\d+\)\)\r\nf OK", out), out


def test_select_qresync_with_another_uidvalidity_tells_no_changes():
    s, store, msgs = _qresync_session()
    box = store.folders["bob@example.com"]["INBOX"]
    since = box.modseq
    store.expunge_messages("bob@example.com", "INBOX", [msgs[0]["id"]])
    out = s.cmd(f"s SELECT INBOX (QRESYNC ({box.validity + 1} {since}))")
    assert b"VANISHED" not in out and b"FETCH" not in out
    assert out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")


def test_select_replacing_a_selected_mailbox_says_closed_first():
    s = Session()
    s.login()
    s.cmd("a SELECT INBOX")
    out = s.cmd("b SELECT Sent")
    assert out.startswith(b"* OK [CLOSED] ")
    assert b"* OK [CLOSED]" not in s.cmd("c UNSELECT")


def test_vanished_waits_while_commands_by_sequence_number_run():
    s, store, msgs = _qresync_session()
    s.cmd("s SELECT INBOX")
    store.expunge_messages("bob@example.com", "INBOX", [msgs[0]["id"]])
    for command in ("f FETCH 1:* (FLAGS)", "t STORE 2 +FLAGS (\\Flagged)",
                    "r SEARCH ALL"):
        out = s.cmd(command)
        assert b"VANISHED" not in out and b"EXPUNGE" not in out, out
    out = s.cmd("u UID FETCH 1:* (FLAGS)")           # a UID command may tell it
    assert out.endswith(b"* VANISHED 1\r\nu OK FETCH completed\r\n"), out
    assert b"EXPUNGE" not in out
    assert s.cmd("n NOOP") == b"n OK NOOP completed\r\n"


class ForgetfulStore(MemoryIMAPStore):
    """A store whose tombstones were purged: it cannot say what was expunged."""

    def changes(self, user, folder, since):
        return super().changes(user, folder, since).addCallback(
            lambda c: type(c)(status=c.status, updated=c.updated, expunged_uids=None))


def test_select_qresync_after_the_tombstones_were_purged_tells_every_uid_not_present():
    store = ForgetfulStore()
    msgs = [store.add("bob@example.com", MESSAGE) for _ in range(6)]
    box = store.folders["bob@example.com"]["INBOX"]
    since = box.modseq
    store.expunge_messages("bob@example.com", "INBOX", [msgs[1]["id"], msgs[4]["id"]])
    s = Session(store)
    s.login()
    s.cmd("e ENABLE QRESYNC")
    out = s.cmd(f"s EXAMINE INBOX (QRESYNC ({box.validity} {since}))")
    assert b"* VANISHED (EARLIER) 2,5\r\n" in out, out
    s.cmd("u UNSELECT")
    # the match data show that UID 3 is still message 2: 2 need not be told again
    out = s.cmd(f"s EXAMINE INBOX (QRESYNC ({box.validity} {since} 3:6 (2 3)))")
    assert b"* VANISHED (EARLIER) 5\r\n" in out, out
