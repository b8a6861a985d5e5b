"""Every message of the corpus, sent over SMTP, comes back over POP3 byte for byte,
apart from the trace headers the server puts in front (Return-Path, Delivered-To,
Received)."""

from __future__ import annotations

import poplib
import smtplib

import pytest

from tests.support.messages import corpus
from tests.support.server import ServerProcess, base_config, wait_for

PASSWORD = "corpus-pass-1"
# poplib refuses lines over 2048 octets; long-lines.eml has longer ones (legal in 8BITMIME
# bodies up to 998, and the corpus also carries a longer one to test the server).
poplib._MAXLINE = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    srv = ServerProcess(root, base_config(root / "var"))
    srv.add_user("alice@example.com", PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def retr_all(srv) -> list[bytes]:
    box = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    try:
        box.user("alice@example.com")
        box.pass_(PASSWORD)
        out = []
        for i in range(box.stat()[0]):
            _resp, lines, octets = box.retr(i + 1)
            raw = b"".join(line + b"\r\n" for line in lines)
            assert len(raw) == octets          # LIST/RETR octets equal the bytes sent
            out.append(raw)
        for i in range(len(out)):
            box.dele(i + 1)
        return out
    finally:
        box.quit()


def strip_trace(raw: bytes) -> bytes:
    """Drop the leading Return-Path, Delivered-To and (folded) Received headers."""
    lines = raw.split(b"\r\n")
    i = 0
    while i < len(lines):
        name = lines[i].split(b":", 1)[0].lower()
        if name in (b"return-path", b"delivered-to", b"received"):
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            continue
        break
    return b"\r\n".join(lines[i:])


@pytest.mark.parametrize("name", sorted(corpus()))
def test_corpus_message_round_trips_byte_identical(server, name):
    original = corpus()[name]
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.ehlo("corpus.example.org")
        assert s.mail("sender@example.org", ["BODY=8BITMIME"])[0] == 250
        assert s.rcpt("alice@example.com")[0] == 250
        # smtplib dot-stuffs and ends with CRLF.CRLF; the server must undo exactly that.
        code, _ = s.data(original)
        assert code == 250
    got = wait_for(lambda: retr_all(server), what=f"{name} delivered")
    assert len(got) == 1
    expected = original if original.endswith(b"\r\n") else original + b"\r\n"
    assert strip_trace(got[0]) == expected
