"""One mail must never stall the server: hostile shapes sent to a real ``mailet-mta``
process while a second client sends NOOP every 0.2 s.

Each shape gets its documented outcome (docs/SECURITY.md, section 1) and the worst
NOOP round trip while it is received and processed stays under 0.5 s:

- a header block that never ends (~20 MB without an empty line): ``552 5.3.4`` once
  its data is read (``maxHeaderSize``), and the session goes on;
- a multipart of 100,000 parts with a ``Bcc:`` header: accepted, ``Bcc`` removed from
  the raw header block, ``AddFooter`` skips it (``maxMimeParts``), delivered;
- 5,000 levels of nested multiparts: accepted, ``AddFooter`` skips it
  (``maxMimeDepth``), delivered;
- 20 MB of plain text: ``AddFooter`` parses, edits and serialises it on a mailet
  worker thread, and it is delivered with the footer.
"""

from __future__ import annotations

import poplib
import smtplib
import threading
import time

import pytest

from tests.soak.harness import local_only_processors
from tests.support.server import ServerProcess, base_config, wait_for

PASSWORD = "hostile mail test password"
FOOTER = "-- footer of the hostile mail test"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    processors = local_only_processors()
    processors["local-delivery"]["mailets"].insert(
        0, {"match": "All", "class": "AddFooter", "parameters": {"text": FOOTER}})
    smtp = [{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
             "authorizedAddresses": ["127.0.0.1/32"], "maxMessageSize": "64m"}]
    srv = ServerProcess(root, base_config(root / "var", smtp=smtp, processors=processors))
    srv.add_user("alice@example.com", PASSWORD)
    srv.start()
    yield srv
    srv.stop()


class NoopProbe:
    """A second SMTP client sending NOOP every 0.2 s; keeps the worst round trip."""

    def __init__(self, port: int):
        self.client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        self.client.ehlo("probe.example.org")
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            code, _ = self.client.noop()
            assert code == 250
            self.worst = max(self.worst, time.monotonic() - started)
            self.count += 1
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        # A mail handled within one probe interval still gets a NOOP before and after.
        deadline = time.monotonic() + 5
        while self.count < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(40)
        self.client.quit()


def mailbox_count(srv) -> int:
    box = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=30)
    try:
        box.user("alice@example.com")
        box.pass_(PASSWORD)
        return box.stat()[0]
    finally:
        box.quit()


def mailbox(srv) -> list[bytes]:
    box = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=30)
    try:
        box.user("alice@example.com")
        box.pass_(PASSWORD)
        count, _ = box.stat()
        return [b"\r\n".join(box.retr(i + 1)[1]) + b"\r\n" for i in range(count)]
    finally:
        box.quit()


def send(srv, data: bytes) -> tuple[int, bytes, int]:
    """DATA of ``data``: (code, text) of the reply to the end of data, and the NOOP
    code that follows on the same session."""
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=120) as s:
        s.ehlo("client.example.org")
        s.mail("carol@example.org")
        s.rcpt("alice@example.com")
        code, text = s.data(data)
        return code, text, s.noop()[0]


def many_parts(n: int) -> bytes:
    head = (b"From: carol@example.org\r\nTo: alice@example.com\r\nBcc: hidden@example.org\r\n"
            b"Subject: many parts\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n")
    return head + (b"--b\r\n\r\n" + b"x" * 40 + b"\r\n") * n + b"--b--\r\n"


def nested(depth: int) -> bytes:
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                    for i in range(depth))
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return (b"From: carol@example.org\r\nTo: alice@example.com\r\nSubject: deep\r\n"
            b"MIME-Version: 1.0\r\n" + head + b"Content-Type: text/plain\r\n\r\nhi" + tail)


def test_endless_header_block_is_refused_without_stalling_other_sessions(server):
    endless = (b"X-Filler: " + b"a" * 60 + b"\r\n") * (20 * 1024 * 1024 // 72)
    with NoopProbe(server.port("smtp")) as probe:
        code, text, after = send(server, endless)
    assert (code, after) == (552, 250)
    assert b"5.3.4" in text and b"maxHeaderSize" in text
    print(f"worst NOOP round trip: {probe.worst:.3f}s over {probe.count}")
    assert probe.count >= 2 and probe.worst < 0.5, f"worst NOOP {probe.worst:.3f}s"


@pytest.mark.parametrize("shape, data, limit", [
    ("100k parts", many_parts(100_000), "maxMimeParts"),
    ("deep nesting", nested(5000), "maxMimeDepth"),
])
def test_hostile_mime_is_delivered_without_stalling_other_sessions(server, shape, data,
                                                                   limit):
    before = mailbox_count(server)
    with NoopProbe(server.port("smtp")) as probe:
        code, _, after = send(server, data)
        assert (code, after) == (250, 250)
        wait_for(lambda: mailbox_count(server) > before, timeout=90, interval=0.5,
                 what=f"delivery of the {shape} mail")
    delivered = mailbox(server)[-1]
    head, _, body = delivered.partition(b"\r\n\r\n")
    assert b"\r\nBcc:" not in head and b"From: carol@example.org" in head
    assert FOOTER.encode() not in delivered
    assert body.endswith(data[data.index(b"\r\n\r\n") + 4:])
    server.wait_log(f"({'spoolmanager ' + limit}); no footer added")
    print(f"worst NOOP round trip: {probe.worst:.3f}s over {probe.count}")
    assert probe.count >= 2 and probe.worst < 0.5, f"worst NOOP {probe.worst:.3f}s"


def test_a_footer_on_a_large_text_mail_is_added_off_the_reactor(server):
    body = (b"y" * 76 + b"\r\n") * 260_000                       # 20 MB of plain text
    data = (b"From: carol@example.org\r\nTo: alice@example.com\r\nSubject: large text\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body)
    before = mailbox_count(server)
    with NoopProbe(server.port("smtp")) as probe:
        code, _, after = send(server, data)
        assert (code, after) == (250, 250)
        wait_for(lambda: mailbox_count(server) > before, timeout=90, interval=0.5,
                 what="delivery of the large text mail")
    delivered = mailbox(server)[-1]
    assert delivered.rstrip().endswith(FOOTER.encode()) and body in delivered
    print(f"worst NOOP round trip: {probe.worst:.3f}s over {probe.count}")
    assert probe.count >= 2 and probe.worst < 0.5, f"worst NOOP {probe.worst:.3f}s"
