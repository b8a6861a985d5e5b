"""Twisted peer: stock ``twisted.mail.pop3.POP3`` over one Maildir per user.

    python bench/peers/twisted_pop3_maildir.py --root DIR --users u1:pw1,u2:pw2 --ready FILE

``DIR/<user>`` is each user's Maildir. The mailbox class is Twisted's
``MaildirMailbox`` with the two Python 3 repairs it needs (messages opened in binary,
the Trash path as bytes; see the project's notes on twisted.mail). Passwords come
from an in-memory checker (no hashing). TCP_NODELAY is set on every connection.
Listens on a free 127.0.0.1 port and writes it to ``--ready``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from twisted.cred import checkers, portal
from twisted.internet import protocol, reactor
from twisted.mail import maildir, pop3
from zope.interface import implementer


class Box(maildir.MaildirMailbox):
    """MaildirMailbox with bytes paths and binary message files (Python 3)."""

    def getMessage(self, i):
        return open(self.list[i], "rb")

    def deleteMessage(self, i):
        trash = os.path.join(self.path, b".Trash", b"cur", os.path.basename(self.list[i]))
        os.rename(self.list[i], trash)
        self.deleted[self.list[i]] = trash
        self.list[i] = 0


@implementer(portal.IRealm)
class MaildirRealm:
    def __init__(self, root: bytes):
        self.root = root

    def requestAvatar(self, avatar_id, mind, *interfaces):
        if pop3.IMailbox not in interfaces:
            raise NotImplementedError()
        name = avatar_id if isinstance(avatar_id, bytes) else avatar_id.encode()
        return pop3.IMailbox, Box(os.path.join(self.root, name)), lambda: None


class NoDelayPOP3(pop3.POP3):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        super().connectionMade()


class Factory(protocol.ServerFactory):
    def __init__(self, the_portal):
        self.portal = the_portal

    def buildProtocol(self, addr):
        p = NoDelayPOP3()
        p.portal = self.portal
        p.factory = self
        return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--users", required=True, help="user:password,…")
    parser.add_argument("--ready", required=True)
    args = parser.parse_args()
    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse()
    for pair in args.users.split(","):
        user, _, password = pair.partition(":")
        checker.addUser(user.encode(), password.encode())
    the_portal = portal.Portal(MaildirRealm(os.fsencode(args.root)), [checker])
    port = reactor.listenTCP(0, Factory(the_portal), interface="127.0.0.1")
    Path(args.ready).write_text(str(port.getHost().port))
    reactor.run()


if __name__ == "__main__":
    main()
