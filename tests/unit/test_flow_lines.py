"""The command-line reader shared by SMTP and POP3: lines by offset, bounded length."""

from __future__ import annotations

import time

from mailet_mta.flow.lines import TOO_LONG, LineBuffer


def lines_of(buf: LineBuffer, limit: int = 100) -> list:
    out = []
    for _ in range(100_000):
        line = buf.next_line(limit)
        if line is None:
            return out
        out.append(line)
    raise AssertionError("next_line never ran dry")


def test_lines_end_at_lf_and_one_cr_before_it_is_dropped():
    buf = LineBuffer()
    buf.feed(b"NOOP\r\nQUIT\nCR\r\r\nbare\rcr\r\n")
    assert lines_of(buf) == [b"NOOP", b"QUIT", b"CR\r", b"bare\rcr"]
    assert len(buf) == 0


def test_partial_line_waits_for_the_rest_across_feeds():
    buf = LineBuffer()
    buf.feed(b"EHLO exa")
    assert buf.next_line(100) is None and len(buf) == 8
    buf.feed(b"mple.org\r\nMAIL")
    assert lines_of(buf) == [b"EHLO example.org"]
    assert len(buf) == 4
    buf.feed(b" FROM:<>\r\n")
    assert lines_of(buf) == [b"MAIL FROM:<>"]


def test_line_over_the_limit_is_reported_once_when_its_end_arrives():
    buf = LineBuffer()
    buf.feed(b"x" * 50 + b"\r\nNOOP\r\n")
    assert lines_of(buf, limit=40) == [TOO_LONG, b"NOOP"]


def test_line_over_the_limit_without_an_end_is_dropped_as_it_arrives():
    buf = LineBuffer()
    buf.feed(b"y" * 41)
    assert buf.next_line(40) is TOO_LONG and len(buf) == 0
    for _ in range(100):                         # the rest of it is dropped, unreported
        buf.feed(b"y" * 1000)
        assert buf.next_line(40) is None and len(buf) == 0
    buf.feed(b"yyy\r\nNOOP\r\n")
    assert lines_of(buf, limit=40) == [b"NOOP"]


def test_line_of_exactly_the_limit_with_its_cr_is_accepted():
    buf = LineBuffer()
    buf.feed(b"z" * 39 + b"\r\n")                # 40 octets before the LF
    assert lines_of(buf, limit=40) == [b"z" * 39]


def test_take_returns_the_unread_rest_and_empties_the_buffer():
    buf = LineBuffer()
    buf.feed(b"DATA\r\nSubject: x\r\n\r\nbody")
    assert buf.next_line(100) == b"DATA"
    assert buf.take() == b"Subject: x\r\n\r\nbody"
    assert len(buf) == 0 and not buf
    buf.feed(b"a\r\nb")
    buf.clear()
    assert len(buf) == 0 and buf.next_line(100) is None


def test_many_pipelined_lines_in_one_chunk_are_read_in_linear_time():
    # Re-slicing the rest of a 4 MiB buffer for each of its 524,288 lines copies about
    # 1 TiB (some 50 s); reading by offset copies each line once (about 0.5 s).
    buf = LineBuffer()
    buf.feed(b"NOOP x\r\n" * 524_288)
    started = time.process_time()
    count = 0
    while buf.next_line(100) is not None:
        count += 1
    took = time.process_time() - started
    assert count == 524_288 and len(buf) == 0
    assert took < 5.0, f"{took:.2f} s of CPU for 4 MiB of lines"


def test_take_upto_returns_at_most_the_limit_and_keeps_the_rest():
    from mailet_mta.flow.lines import LineBuffer

    buf = LineBuffer()
    buf.feed(b"abcdef\r\nnext\r\n")
    assert buf.take_upto(3) == b"abc"
    assert buf.take_upto(3) == b"def"
    assert buf.next_line(100) == b""
    assert buf.take_upto(100) == b"next\r\n"
    assert len(buf) == 0
