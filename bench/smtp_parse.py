"""DATA parsing throughput, in process: our bulk reader vs twisted.mail.smtp.ESMTP.

    python bench/smtp_parse.py [--size 100000] [--messages 200]

Each side receives the same wire bytes (EHLO, MAIL, RCPT, DATA, a dot-stuffed body
of about ``--size`` octets in 64 KiB reads, ``.``) on a StringTransport; the body
goes to memory only (no disk). Prints MB/s of body and messages/s for:

- ``reader``: :class:`mailet_mta.smtp.data_reader.DotDataReader` alone;
- ``mailet-mta``: the whole :class:`SMTPServerProtocol` session (commands included);
- ``twisted``: ``twisted.mail.smtp.ESMTP`` with a discarding IMessage (line path).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.mail import smtp
from zope.interface import implementer

from mailet_mta.smtp.data_reader import DotDataReader
from mailet_mta.smtp.server import SMTPServerFactory
from tests.support.smtp_backend import RecordingBackend, smtp_config

READ = 65536
PEER = IPv4Address("TCP", "203.0.113.5", 1)
HOST = IPv4Address("TCP", "10.0.0.1", 25)


def make_body(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    lines = [b"..leading dot line\r\n" if i % 50 == 0 else line
             for i in range(size // len(line) + 1)]
    return b"Subject: bench\r\n\r\n" + b"".join(lines)


def wire_for(body: bytes) -> list[bytes]:
    data = (b"MAIL FROM:<x@remote.net>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"
            + body + b".\r\n")
    return [data[i:i + READ] for i in range(0, len(data), READ)]


def bench_reader(body: bytes, n: int) -> float:
    data = body + b".\r\n"
    reads = [data[i:i + READ] for i in range(0, len(data), READ)]
    start = time.perf_counter()
    for _ in range(n):
        out = []
        r = DotDataReader(out.append)
        for piece in reads:
            r.feed(piece)
    return time.perf_counter() - start


class _MemoryWriter:
    def __init__(self):
        self.parts = []

    def write(self, data):
        self.parts.append(data)

    def finish(self):
        from mailet_mta.storage.blobs import BlobRef
        return defer.succeed(BlobRef("x", 0, b"".join(self.parts)))

    def abort(self):
        self.parts = []


def bench_ours(body: bytes, n: int) -> float:
    backend = RecordingBackend(tempfile.mkdtemp())
    backend.new_blob_writer = _MemoryWriter
    backend.accept = lambda mail, ref: defer.succeed(None)
    factory = SMTPServerFactory(smtp_config(max_message_size=0), backend)
    proto = factory.buildProtocol(PEER)
    proto.callLater = lambda *a: _NoCall()
    t = StringTransport(peerAddress=PEER, hostAddress=HOST)
    proto.makeConnection(t)
    proto.dataReceived(b"EHLO bench\r\n")
    reads = wire_for(body)
    start = time.perf_counter()
    for _ in range(n):
        for piece in reads:
            proto.dataReceived(piece)
        t.clear()
    return time.perf_counter() - start


class _NoCall:
    def cancel(self):
        pass

    def reset(self, t):
        pass


@implementer(smtp.IMessage)
class _Discard:
    def lineReceived(self, line):
        pass

    def eomReceived(self):
        return defer.succeed(None)

    def connectionLost(self):
        pass


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def receivedHeader(self, helo, origin, recipients):
        return None

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        return _Discard


def bench_twisted(body: bytes, n: int) -> float:
    proto = smtp.ESMTP()
    proto.delivery = _Delivery()
    proto.callLater = lambda *a: _NoCall()
    t = StringTransport(peerAddress=PEER, hostAddress=HOST)
    proto.makeConnection(t)
    proto.dataReceived(b"EHLO bench\r\n")
    reads = wire_for(body)
    start = time.perf_counter()
    for _ in range(n):
        for piece in reads:
            proto.dataReceived(piece)
        t.clear()
    return time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=200)
    args = ap.parse_args(argv)
    body = make_body(args.size)
    mb = len(body) * args.messages / 1e6
    print(f"{args.messages} messages of {len(body)} octets ({mb:.1f} MB), {READ}-octet reads")
    for name, fn in (("reader", bench_reader), ("mailet-mta", bench_ours),
                     ("twisted", bench_twisted)):
        best = min(fn(body, args.messages) for _ in range(3))
        print(f"{name:>11}: {mb / best:8.1f} MB/s  {args.messages / best:9.0f} msg/s")


if __name__ == "__main__":
    main()
