"""The outgoing queue against aiosmtpd, a real SMTP server in its own thread."""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from aiosmtpd.controller import Controller

from tests.support.delivery_harness import DeliveryHarness, make_message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """aiosmtpd handler that keeps every envelope and counts sessions."""

    def __init__(self):
        self.envelopes = []
        self.sessions = set()

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos),
                               envelope.original_content))
        self.sessions.add(id(session))
        return "250 OK"


@pytest.fixture
def sink():
    handler = Sink()
    handler.port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    yield handler
    controller.stop()


@pytest_twisted.ensureDeferred
async def test_queued_mail_is_delivered_to_the_mx_and_removed_from_the_queue(tmp_path, sink):
    h = DeliveryHarness(tmp_path, {"example.com": [f"127.0.0.1:{sink.port}"]})
    h.start()
    try:
        data = make_message("one", body=".starts with a dot\r\n..two\r\n.\r\nend\r\n")
        await h.enqueue("alice@origin.test", ["bob@example.com", "carol@example.com"], data)
        await h.until(lambda: sink.envelopes, what="delivery")
        mail_from, rcpts, content = sink.envelopes[0]
        assert mail_from == "alice@origin.test"
        assert sorted(rcpts) == ["bob@example.com", "carol@example.com"]
        assert content == data
        await h.until(lambda: h.rows().addCallback(lambda rows: rows == []),
                      what="the row to be removed")
        assert h.injected == []
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_several_mails_to_one_destination_share_one_connection(tmp_path, sink):
    h = DeliveryHarness(tmp_path, {"example.com": [f"127.0.0.1:{sink.port}"]},
                        per_destination=1)
    for i in range(5):
        await h.enqueue("alice@origin.test", [f"user{i}@example.com"],
                        make_message(f"m{i}"))
    h.start()
    try:
        await h.until(lambda: len(sink.envelopes) == 5, what="five deliveries")
        assert len(sink.sessions) == 1
    finally:
        await h.stop()


@pytest_twisted.ensureDeferred
async def test_large_message_is_streamed_from_its_blob_file(tmp_path, sink):
    h = DeliveryHarness(tmp_path, {"example.com": [f"127.0.0.1:{sink.port}"]},
                        inline_limit=1024)
    h.start()
    try:
        data = make_message("big", size=300_000)
        await h.enqueue(None, ["bob@example.com"], data)
        await h.until(lambda: sink.envelopes, what="delivery")
        assert sink.envelopes[0][0] == "<>"
        assert sink.envelopes[0][2] == data
    finally:
        await h.stop()
