"""The bulk DATA reader: terminator, unstuffing, bare CR/LF, limits, every split point.

Every test of the readers runs twice: with the C scans (when built) and with the
pure-Python ones, and the two are compared directly as well."""

from __future__ import annotations

import pytest

from mailet_mta.smtp import data_reader
from mailet_mta.smtp.data_reader import (
    CountedChunkReader,
    DotDataReader,
    HeaderBlockGuard,
    LineEndCheck,
    py_find_line_dot,
    py_has_bare_line_end,
)

C_SCANS = {"bare": data_reader.has_bare_line_end, "dot": data_reader.find_line_dot}
PY_SCANS = {"bare": py_has_bare_line_end, "dot": py_find_line_dot}


@pytest.fixture(autouse=True, scope="module", params=["c", "python"])
def scans(request):
    """The readers use the C scans, then the pure-Python ones."""
    if request.param == "c" and not data_reader.C_SCANS:
        pytest.skip("the C scans are not built")
    chosen = C_SCANS if request.param == "c" else PY_SCANS
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_reader, "has_bare_line_end", chosen["bare"])
        patch.setattr(data_reader, "find_line_dot", chosen["dot"])
        yield request.param


def read_all(pieces, limit=0):
    out = []
    reader = DotDataReader(out.append, limit)
    rest = None
    for piece in pieces:
        if rest is None:
            rest = reader.feed(piece)
        else:
            rest += piece
    return b"".join(out), rest, reader


WIRE = b"Subject: x\r\n\r\n..leading dot\r\nline\r\n...two\r\n.\r\nQUIT\r\n"
BODY = b"Subject: x\r\n\r\n.leading dot\r\nline\r\n..two\r\n"


def test_data_ends_only_at_crlf_dot_crlf_and_returns_the_pipelined_rest():
    body, rest, reader = read_all([WIRE])
    assert body == BODY and rest == b"QUIT\r\n" and not reader.bare_line_end


@pytest.mark.parametrize("cut", range(1, len(WIRE)))
def test_data_split_at_every_point_gives_the_same_body(cut):
    body, rest, _ = read_all([WIRE[:cut], WIRE[cut:]])
    assert body == BODY and rest == b"QUIT\r\n"


def test_data_fed_byte_by_byte_gives_the_same_body():
    out = []
    reader = DotDataReader(out.append)
    rest = None
    for i in range(len(WIRE)):
        rest = reader.feed(WIRE[i:i + 1])
        if rest is not None:
            break
    assert b"".join(out) == BODY and i == WIRE.index(b"QUIT") - 1


def test_empty_message_is_a_dot_right_after_354():
    body, rest, _ = read_all([b".\r\n"])
    assert body == b"" and rest == b""


def test_first_line_is_unstuffed_as_if_after_a_crlf():
    body, _, _ = read_all([b"..x\r\n.\r\n"])
    assert body == b".x\r\n"


@pytest.mark.parametrize("seq", [b"\n.\n", b"\n.\r\n", b"\r.\n", b"\r.\r\n", b"\r\n.\r",
                                 b"\n", b"\r"])
def test_smuggling_sequence_does_not_end_data_and_is_flagged(seq):
    wire = b"Subject: a\r\n\r\nx" + seq + b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\n.\r\n"
    body, rest, reader = read_all([wire])
    assert rest == b"" and b"MAIL FROM:<evil@x>" in body and reader.bare_line_end


def test_bare_cr_split_from_lf_across_reads_is_not_flagged():
    body, _, reader = read_all([b"a\r", b"\nb\r\n.\r\n"])
    assert body == b"a\r\nb\r\n" and not reader.bare_line_end


def test_over_limit_stops_writing_but_reads_to_terminator():
    wire = b"x" * 5000 + b"\r\n.\r\nNOOP\r\n"
    body, rest, reader = read_all([wire[:1000], wire[1000:]], limit=1000)
    assert reader.too_big and rest == b"NOOP\r\n" and len(body) <= 1000


def test_long_line_in_data_stays_data():
    wire = b"A" * 100_000 + b"\r\nRCPT TO:<x@y>\r\n.\r\n"
    body, rest, reader = read_all([wire[i:i + 4096] for i in range(0, len(wire), 4096)])
    assert rest == b"" and body.endswith(b"RCPT TO:<x@y>\r\n")


def test_counted_chunk_reader_is_binary_safe_and_returns_the_rest():
    out = []
    r = CountedChunkReader(7, out.append)
    assert r.feed(b"\r\n.\r\n") is None
    assert r.feed(b"\0\nNOOP\r\n") == b"NOOP\r\n"
    assert b"".join(out) == b"\r\n.\r\n\0\n"


@pytest.mark.parametrize("data, bad", [
    (b"Subject: a\r\n\r\nline\r\nend\r\n", False),
    (b"Subject: a\r\n\r\nline\nend\r\n", True),
    (b"Subject: a\r\n\r\nline\rend\r\n", True),
    (b"Subject: a\r\n\r\nline\r\n\r", True),
    (b"\n", True),
])
def test_line_end_check_judges_bdat_bytes_alike_at_every_split_point(data, bad):
    for cut in range(len(data) + 1):
        check = LineEndCheck()
        check.feed(data[:cut])
        check.feed(data[cut:])
        check.end()
        assert check.bad is bad, cut


@pytest.mark.parametrize("data, header", [
    (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", 14),
    (b"\r\nbody\r\n\r\n", 2),
    (b"A: 1\r\n", 6),
])
def test_header_block_guard_counts_the_header_at_every_split_point(data, header):
    for cut in range(len(data) + 1):
        out = []
        guard = HeaderBlockGuard(out.append, limit=header)
        guard.feed(data[:cut])
        guard.feed(data[cut:])
        assert (guard.size, guard.too_big, b"".join(out)) == (header, False, data), cut
        small = HeaderBlockGuard(out.append, limit=header - 1)
        small.feed(data[:cut])
        small.feed(data[cut:])
        assert small.too_big, cut


# Bytes made mostly of line ends and dots, so that stuffing, terminators and bare
# CR/LF turn up often; split at arbitrary points.
