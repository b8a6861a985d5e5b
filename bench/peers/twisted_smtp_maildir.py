"""Twisted peer: stock ``twisted.mail.smtp.ESMTP``, each message fsynced to a Maildir.

    python bench/peers/twisted_smtp_maildir.py --maildir DIR --ready FILE

The IMessage collects lines; ``eomReceived`` writes tmp → fsync → rename into new/ →
fsync new/ in the reactor's thread pool (``deferToThread``) and answers when that is
done. TCP_NODELAY is set on every connection. Listens on a free 127.0.0.1 port and
writes it to ``--ready``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from twisted.internet import protocol, reactor, threads
from twisted.mail import smtp
from zope.interface import implementer

from bench.common import maildir_deliver, maildir_make


@implementer(smtp.IMessage)
class MaildirMessage:
    """Lines in memory, then one durable Maildir file."""

    def __init__(self, root: Path, prefix: bytes):
        self.root = root
        self.lines = [prefix]

    def lineReceived(self, line):
        self.lines.append(line + b"\r\n")

    def eomReceived(self):
        data = b"".join(self.lines)
        self.lines = None
        return threads.deferToThread(maildir_deliver, self.root, data)

    def connectionLost(self):
        self.lines = None


@implementer(smtp.IMessageDelivery)
class MaildirDelivery:
    """Accepts every sender and recipient."""

    def __init__(self, root: Path):
        self.root = root

    def receivedHeader(self, helo, origin, recipients):
        return None

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        prefix = (f"Return-Path: <{user.orig}>\r\nDelivered-To: {user.dest}\r\n").encode()
        return lambda: MaildirMessage(self.root, prefix)


class BenchESMTP(smtp.ESMTP):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        super().connectionMade()


class Factory(protocol.ServerFactory):
    def __init__(self, root: Path):
        self.delivery = MaildirDelivery(root)

    def buildProtocol(self, addr):
        p = BenchESMTP()
        p.factory = self
        p.host = b"peer.example"
        p.delivery = self.delivery
        return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--ready", required=True)
    args = parser.parse_args()
    root = maildir_make(Path(args.maildir))
    reactor.suggestThreadPoolSize(10)
    port = reactor.listenTCP(0, Factory(root), interface="127.0.0.1", backlog=1024)
    Path(args.ready).write_text(str(port.getHost().port))
    reactor.run()


if __name__ == "__main__":
    main()
