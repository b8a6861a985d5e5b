"""Dot-stuffing of the DATA stream, chunk by chunk (RFC 5321 §4.5.2)."""

from __future__ import annotations

import pytest

from mailet_mta.delivery.dotstuff import DotStuffer, stuff


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    body = wire[:-3]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def feed_in(data: bytes, size: int) -> bytes:
    s = DotStuffer()
    return b"".join([s.feed(data[i:i + size]) for i in range(0, len(data), size)]
                    + [s.finish()])


@pytest.mark.parametrize("chunk", [16384, 65536])
def test_dot_at_a_chunk_boundary_is_stuffed(chunk):
    data = b"a" * (chunk - 2) + b"\r\n" + b".hidden\r\nMAIL FROM:<x@evil>\r\n"
    wire = feed_in(data, chunk)
    assert b"\r\n..hidden\r\n" in wire
    assert unstuff(wire) == data


@pytest.mark.parametrize("chunk", [16384, 65536])
def test_crlf_split_across_a_chunk_boundary_still_stuffs_the_dot(chunk):
    data = b"a" * (chunk - 1) + b"\r\n.\r\nQUIT\r\n"
    wire = feed_in(data, chunk)
    assert b"\r\n..\r\nQUIT" in wire
    assert wire.count(b"\r\n.\r\n") == 1 and wire.endswith(b"\r\n.\r\n")


def test_first_line_dot_is_stuffed():
    assert stuff(b".\r\nbody\r\n") == b"..\r\nbody\r\n.\r\n"


def test_bare_dot_lines_are_stuffed_and_the_terminator_is_single():
    wire = stuff(b"x\r\n.\r\n.\r\n..\r\n")
    assert wire == b"x\r\n..\r\n..\r\n...\r\n.\r\n"


def test_bare_lf_line_ends_become_crlf_even_across_chunks():
    data = b"line1\nline2\r\n.dot\n"
    assert feed_in(data, 1) == b"line1\r\nline2\r\n..dot\r\n.\r\n"
    assert feed_in(data, 6) == stuff(data)


def test_missing_final_crlf_is_added_and_empty_message_is_just_the_terminator():
    assert stuff(b"no newline") == b"no newline\r\n.\r\n"
    assert stuff(b"") == b".\r\n"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 4096])
def test_any_chunking_gives_the_same_wire_bytes(size):
    data = b".a\r\n\r\n.\r\nb.\r\n..c\n.\r\r\n" * 50
    assert feed_in(data, size) == stuff(data, len(data))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 65536])
def test_bare_cr_never_leaves_alone_whatever_the_chunking(size):
    body = b"hello\r.\r\nMAIL FROM:<m@evil.test>\r\n\r\rx\r\n\n\r\r\n.\rend\r"
    wire = feed_in(body, size)
    assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n")
    assert wire == (b"hello\r\n..\r\nMAIL FROM:<m@evil.test>\r\n\r\n\r\nx\r\n\r\n\r\n\r\n"
                    b"..\r\nend\r\n.\r\n")
