"""The IMAP command reader: tokens, literals (synchronising and LITERAL+) and bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailet_mta.imap.parser import CONTINUE, Command, CommandReader, Rejected


def events(reader: CommandReader, data: bytes) -> list:
    reader.feed(data)
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


def one(data: bytes, **limits):
    got = events(CommandReader(**limits), data)
    assert len(got) == 1, got
    return got[0]


def test_atoms_strings_and_lists():
    cmd = one(b'a1 STORE 1:* +FLAGS.SILENT (\\Seen $Junk) "x \\"y\\" \\\\"\r\n')
    assert cmd == Command("a1", "STORE", ["1:*", "+FLAGS.SILENT", ["\\Seen", "$Junk"],
                                          b'x "y" \\'])


def test_command_name_is_upper_cased_and_atoms_keep_their_case():
    assert one(b"t uid fetch 1 flags\r\n") == Command("t", "UID", ["fetch", "1", "flags"])


def test_fetch_section_with_spaces_is_one_atom():
    cmd = one(b"a FETCH 1:3 (UID BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100> BODY[])\r\n")
    assert cmd.args == ["1:3", ["UID", "BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>",
                                "BODY[]"]]


def test_nested_lists_and_nil():
    assert one(b"a SEARCH (OR (SEEN) NIL) ALL\r\n").args == [["OR", ["SEEN"], "NIL"], "ALL"]


def test_no_arguments():
    assert one(b"a3 NOOP\r\n") == Command("a3", "NOOP", [])


def test_synchronising_literal_asks_for_continuation():
    reader = CommandReader()
    assert events(reader, b"a LOGIN {3}\r\n") == [CONTINUE]
    assert events(reader, b"bo") == []
    assert reader.reading_literal
    assert events(reader, b"b {6}\r\n") == [CONTINUE]
    assert events(reader, b"secret\r\n") == [Command("a", "LOGIN", [b"bob", b"secret"])]


def test_literal_plus_needs_no_continuation():
    got = events(CommandReader(), b"a LOGIN {3+}\r\nbob {6+}\r\nsecret\r\na2 NOOP\r\n")
    assert got == [Command("a", "LOGIN", [b"bob", b"secret"]), Command("a2", "NOOP", [])]


def test_literal_octets_are_not_parsed():
    got = one(b"a APPEND INBOX (\\Seen) {11+}\r\n) \r\n\"{1}\r\nx\r\n")
    assert got.args == ["INBOX", ["\\Seen"], b') \r\n"{1}\r\nx']


def test_literal_inside_a_list():
    got = events(CommandReader(), b"a SEARCH (SUBJECT {2+}\r\nhi) ALL\r\n")
    assert got == [Command("a", "SEARCH", [["SUBJECT", b"hi"], "ALL"])]


def test_empty_literal():
    assert one(b"a LOGIN {0+}\r\n {1+}\r\nx\r\n").args == [b"", b"x"]


def test_binary_literal8_marker():
    assert one(b"a APPEND INBOX ~{3+}\r\nabc\r\n").args == ["INBOX", b"abc"]


def test_line_over_limit_is_bad_and_the_session_goes_on():
    reader = CommandReader(max_line=100)
    got = events(reader, b"a NOOP " + b"x" * 500 + b"\r\nb NOOP\r\n")
    assert isinstance(got[0], Rejected) and "too long" in got[0].text
    assert not got[0].fatal
    assert got[1] == Command("b", "NOOP", [])


def test_line_over_limit_arriving_in_pieces_is_dropped_as_it_comes():
    reader = CommandReader(max_line=100)
    assert isinstance(events(reader, b"a NOOP " + b"x" * 200)[0], Rejected)
    for _ in range(50):
        assert events(reader, b"y" * 1000) == []
        assert len(reader) == 0
    assert events(reader, b"\r\nb NOOP\r\n") == [Command("b", "NOOP", [])]


def test_line_over_limit_is_answered_with_its_tag_and_the_discard_is_told():
    reader = CommandReader(max_line=100)
    got = events(reader, b"t1 NOOP " + b"x" * 200)
    assert got == [Rejected("t1", "command line too long (the limit is 100 octets "
                            "outside literals)")]
    assert reader.discarding
    assert events(reader, b"x\r\n") == [] and not reader.discarding
    got = events(reader, b"x" * 200 + b"\r\n")             # no tag to be read
    assert [e.tag for e in got] == ["*"]


def test_text_after_literals_counts_towards_the_line_limit():
    reader = CommandReader(max_line=100)
    got = events(reader, b"a X " + b"y" * 60 + b" {1+}\r\nz " + b"w" * 60 + b"\r\n")
    assert isinstance(got[0], Rejected)


def test_synchronising_literal_over_the_limit_is_refused_before_it_is_sent():
    reader = CommandReader(max_literal=1000)
    got = events(reader, b"a LOGIN {1001}\r\nb NOOP\r\n")
    assert got[0] == Rejected("a", "literal too large (1001 octets; the limit is 1000)")
    assert got[1] == Command("b", "NOOP", [])


def test_non_synchronising_literal_over_the_limit_is_fatal():
    got = events(CommandReader(max_literal=1000), b"a LOGIN {99999+}\r\n")
    assert isinstance(got[0], Rejected) and got[0].fatal


class Sink:
    def __init__(self, args, size):
        self.args, self.size = args, size
        self.chunks: list[bytes] = []
        self.aborted = False

    def write(self, data):
        self.chunks.append(data)

    def abort(self):
        self.aborted = True


def test_append_literal_may_be_as_large_as_a_message_and_streams_into_a_sink():
    sinks: list[Sink] = []

    def sink(args, size):
        sinks.append(Sink(args, size))
        return sinks[-1]
    reader = CommandReader(max_literal=1000, max_append=5000, append_sink=sink)
    assert events(reader, b"a APPEND INBOX (\\Seen) {4000}\r\n") == [CONTINUE]
    assert sinks[0].args == ["INBOX", ["\\Seen"]] and sinks[0].size == 4000
    assert events(reader, b"m" * 2500) == []
    assert len(reader) == 0                       # nothing held: it went to the sink
    got = events(reader, b"m" * 1500 + b"\r\n")
    assert got == [Command("a", "APPEND", ["INBOX", ["\\Seen"], sinks[0]])]
    assert b"".join(sinks[0].chunks) == b"m" * 4000
    assert isinstance(events(reader, b"b APPEND INBOX {5001}\r\n")[0], Rejected)
    # a small APPEND literal is held as bytes
    assert events(reader, b"c APPEND INBOX {5+}\r\nhello\r\n")[0].args == ["INBOX", b"hello"]


def test_append_literal_over_the_literal_bound_without_a_sink_is_refused():
    reader = CommandReader(max_literal=1000, max_append=5000,
                           append_sink=lambda args, size: None)
    got = events(reader, b"a APPEND INBOX {4000}\r\nb NOOP\r\n")
    assert isinstance(got[0], Rejected) and got[1] == Command("b", "NOOP", [])


def test_a_streamed_literal_is_aborted_when_the_command_fails_or_the_input_is_dropped():
    sinks: list[Sink] = []

    def sink(args, size):
        sinks.append(Sink(args, size))
        return sinks[-1]
    reader = CommandReader(max_literal=10, max_append=5000, append_sink=sink)
    events(reader, b"a APPEND INBOX {100+}\r\n" + b"x" * 100 + b" (((\r\n")
    assert sinks[0].aborted                        # unbalanced parenthesis after it
    events(reader, b"b APPEND INBOX {100+}\r\n" + b"x" * 50)
    reader.clear()                                 # STARTTLS or connection lost
    assert sinks[1].aborted


def test_total_literal_octets_of_one_command_are_bounded():
    reader = CommandReader(max_literal=10)
    data = b"a SEARCH" + b" {10+}\r\n0123456789" * 5 + b"\r\n"
    got = events(reader, data)
    assert any(isinstance(e, Rejected) and e.fatal for e in got)


def test_token_count_is_bounded():
    got = one(b"a SEARCH" + b" ALL" * 200 + b"\r\n", max_tokens=100)
    assert isinstance(got, Rejected) and "too many" in got.text


def test_nesting_is_bounded():
    got = one(b"a SEARCH " + b"(" * 40 + b"ALL" + b")" * 40 + b"\r\n", max_depth=32)
    assert isinstance(got, Rejected) and "nested" in got.text


def test_bad_syntax_is_rejected_with_the_tag():
    for line in (b'a LOGIN "bob\r\n', b"a SEARCH (ALL\r\n", b"a SEARCH ALL)\r\n",
                 b"a FETCH 1 BODY[HEADER\r\n", b'a LOGIN "a\\x"\r\n', b"a X\x01y\r\n"):
        got = one(line)
        assert isinstance(got, Rejected) and got.tag == "a", (line, got)


def test_missing_or_invalid_tag():
    assert isinstance(one(b"NOOP\r\n"), Rejected)
    assert isinstance(one(b"+ NOOP\r\n"), Rejected)
    assert isinstance(one(b"a* NOOP\r\n"), Rejected)


def test_empty_lines_between_commands_are_ignored():
    assert events(CommandReader(), b"\r\n\r\na NOOP\r\n") == [Command("a", "NOOP", [])]


def test_raw_line_for_authenticate_and_idle():
    reader = CommandReader()
    reader.feed(b"AGJvYgBzZWNyZXQ=\r\nDONE\r\n")
    assert reader.next_line() == b"AGJvYgBzZWNyZXQ="
    assert reader.next_line() == b"DONE"


@given(st.binary(max_size=300))
def test_any_input_gives_events_and_never_grows_past_the_bounds(data):
    reader = CommandReader(max_line=64, max_literal=64, max_append=128)
    for i in range(0, len(data), 7):
        reader.feed(data[i:i + 7])
        while (event := reader.next_event()) is not None:
            assert isinstance(event, (Command, Rejected)) or event is CONTINUE
            if isinstance(event, Command):
                assert sum(len(a) for a in event.args if isinstance(a, bytes)) <= 512
        assert len(reader) <= 64 + 7 + 2


@given(st.lists(st.binary(max_size=40), max_size=5))
def test_literals_round_trip(values):
    line = b"a X"
    for value in values:
        line += b" {%d+}\r\n" % len(value) + value
    assert one(line + b"\r\n").args == values


def test_atoms_are_ascii_and_8bit_goes_in_strings():
    assert isinstance(one("a SELECT Å\r\n".encode()), Rejected)
    assert one('a SELECT "Å"\r\n'.encode()).args == ["Å".encode()]
