"""DATA's two scans over every octet — the bare CR/LF check and the search for
``<CRLF>.`` — in C (when built) and in pure Python: each against a line-by-line
reading of RFC 5321, and the two against each other. (The readers' other tests,
in test_smtp_data_reader.py, run once with each.)"""

from __future__ import annotations

import contextlib
import os
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailet_mta.smtp import data_reader
from mailet_mta.smtp.data_reader import py_find_line_dot, py_has_bare_line_end
from tests.unit.test_smtp_data_reader import read_all

C_SCANS = {"bare": data_reader.has_bare_line_end, "dot": data_reader.find_line_dot}
PY_SCANS = {"bare": py_has_bare_line_end, "dot": py_find_line_dot}
IMPLEMENTATIONS = [PY_SCANS, C_SCANS] if data_reader.C_SCANS else [PY_SCANS]


@contextlib.contextmanager
def using(scans):
    saved = data_reader.has_bare_line_end, data_reader.find_line_dot
    data_reader.has_bare_line_end, data_reader.find_line_dot = scans["bare"], scans["dot"]
    try:
        yield
    finally:
        data_reader.has_bare_line_end, data_reader.find_line_dot = saved


_WIRE_BYTES = st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"a", b"\r\n.",
                                        b"\r\n.\r\n", b"xy"]), max_size=40).map(b"".join)


def _reference_read(wire: bytes):
    """DATA read line by line as RFC 5321 §4.5.2 describes it: the body, the rest after
    the terminator (None: not ended), and whether a bare CR or LF came before it."""
    stream = b"\r\n" + wire                 # the DATA command's own line end
    end = stream.find(b"\r\n.\r\n")
    if end < 0:
        return None, None, None
    content = stream[2:end + 2]
    body = b"\r\n".join(line[1:] if line.startswith(b".") else line
                         for line in content.split(b"\r\n"))
    bare = re.search(rb"\r(?!\n)|(?<!\r)\n", content) is not None
    return body, stream[end + 5:], bare


@given(_WIRE_BYTES)
def test_bare_line_end_is_any_cr_without_lf_or_lf_without_cr(raw):
    expected = re.search(rb"\r(?!\n)|(?<!\r)\n", raw) is not None
    for scans in IMPLEMENTATIONS:
        assert scans["bare"](raw) == expected


@given(_WIRE_BYTES, st.lists(st.integers(min_value=0, max_value=60), max_size=4))
def test_data_read_in_any_pieces_matches_a_line_by_line_read(wire, cuts):
    body, rest, bare = _reference_read(wire)
    points = sorted({min(c, len(wire)) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    for scans in IMPLEMENTATIONS:
        with using(scans):
            got, got_rest, reader = read_all(pieces)
        if body is None:
            assert got_rest is None
            continue
        assert (got, got_rest, reader.bare_line_end) == (body, rest, bare)


# -- the C scans against the pure-Python ones -----------------------------------------------
def test_the_c_scans_are_built_where_a_compiler_is():
    """CI builds the package with a compiler and sets MAILET_MTA_REQUIRE_C_SCANS=1: a
    build that silently fell back to Python fails here."""
    if not data_reader.C_SCANS and not os.environ.get("MAILET_MTA_REQUIRE_C_SCANS"):
        pytest.skip("built without a C compiler")
    assert data_reader.C_SCANS
    from mailet_mta.smtp import _line_scan
    assert C_SCANS == {"bare": _line_scan.bare_line_end, "dot": _line_scan.find_line_dot}


needs_c = pytest.mark.skipif(not data_reader.C_SCANS, reason="the C scans are not built")


@needs_c
@given(_WIRE_BYTES, st.integers(min_value=-3, max_value=70))
def test_c_scans_answer_as_the_python_ones(raw, start):
    assert C_SCANS["bare"](raw) == py_has_bare_line_end(raw)
    assert C_SCANS["dot"](raw) == py_find_line_dot(raw)
    assert C_SCANS["dot"](raw, start) == py_find_line_dot(raw, max(start, 0))


@needs_c
def test_c_scans_answer_as_the_python_ones_on_large_reads():
    """64 KiB reads of mail-like text with a few CR, LF and dot lines put anywhere,
    the edges included; any buffer type the reader may see."""
    rnd = random.Random(5321)
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n"
    base = line * (65536 // len(line) + 1)
    for _ in range(300):
        raw = bytearray(base[:rnd.choice([65536, 65535, 1000, 3, 2, 1])])
        for _ in range(rnd.randrange(0, 3)):
            raw[rnd.randrange(len(raw))] = rnd.choice(b"\r\n.")
        if rnd.random() < 0.3:
            raw[:1] = rnd.choice([b"\n", b".", b"\r"])
        if rnd.random() < 0.3:
            raw[-1:] = rnd.choice([b"\r", b"\n", b"."])
        data = bytes(raw)
        for buf in (data, memoryview(data), raw):
            assert C_SCANS["bare"](buf) == py_has_bare_line_end(data)
            assert C_SCANS["dot"](buf) == py_find_line_dot(data)
        start = rnd.randrange(len(data) + 2)
        assert C_SCANS["dot"](data, start) == py_find_line_dot(data, start)


@needs_c
def test_c_scans_refuse_what_is_not_a_buffer():
    with pytest.raises(TypeError):
        C_SCANS["bare"]("text")
    with pytest.raises(TypeError):
        C_SCANS["dot"](b"x", "0")
    with pytest.raises(TypeError):
        C_SCANS["dot"]()
