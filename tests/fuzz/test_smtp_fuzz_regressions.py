"""Defects the SMTP fuzzer found, each kept as a named regression."""

from __future__ import annotations

from tests.fuzz.replies import smtp_replies
from tests.support.smtp_backend import FakeSession


def raw(s: FakeSession, data: bytes) -> bytes:
    s.proto.dataReceived(data)
    out = s.transport.value()
    s.transport.clear()
    return out


def test_helo_and_ehlo_with_only_unicode_whitespace_answer_501_not_internal_error(tmp_path):
    s = FakeSession(tmp_path)
    for verb in (b"EHLO", b"HELO"):
        for arg in (b"\x0c", b"\x0b", "\u2003".encode()):
            assert smtp_replies(raw(s, verb + b" " + arg + b"\r\n")) == [
                (501, f"5.5.4 Syntax: {verb.decode()} <hostname>")]


def test_reply_never_echoes_control_characters_or_utf8_from_the_client(tmp_path):
    s = FakeSession(tmp_path)
    out = raw(s, b"EHLO a\x1b[31mb\rc\xc2\x80d\r\n")
    assert out.isascii() and b"\x1b" not in out
    assert out.count(b"\r") == out.count(b"\r\n")       # no bare CR smuggled in
    assert smtp_replies(out)[0][0] == 250


def test_reply_lines_stay_within_512_octets_whatever_the_client_sent(tmp_path):
    s = FakeSession(tmp_path)
    out = raw(s, b"EHLO " + b"h" * 1500 + b"\r\n")
    assert all(len(line) + 2 <= 512 for line in out.split(b"\r\n"))
