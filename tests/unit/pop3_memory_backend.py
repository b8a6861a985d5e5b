"""An in-memory POP3 backend for protocol unit tests (same interface as POP3Backend)."""

from __future__ import annotations

from twisted.internet import defer

from mailet_mta.mail import MessageSource
from mailet_mta.pop3.maildrop import Maildrop
from mailet_mta.storage.authenticator import AuthResult
from mailet_mta.storage.mailboxes import MessageContent


class MemoryBackend:
    lease_seconds = 90.0

    def __init__(self, users=None, messages=None):
        self.users = dict(users or {"bob@example.com": "secret"})
        # user -> list of (id, body bytes, prefix)
        self.boxes = {u: [] for u in self.users}
        self.locks: dict[str, str] = {}
        self.throttled: set[str] = set()
        self.throttle_on_failure: set[str] = set()   # a failure from these blocks them
        self.deleted: list[int] = []
        self.hold_login: defer.Deferred | None = None
        self.fail_open = False
        self.hold_finish: defer.Deferred | None = None
        self._next_id = 1
        self._owners = 0
        for user, body in messages or ():
            self.add(user, body)

    def add(self, user: str, body: bytes, prefix: bytes = b"") -> int:
        mid = self._next_id
        self._next_id += 1
        self.boxes[user].append((mid, body, prefix))
        return mid

    def new_owner(self) -> str:
        self._owners += 1
        return f"test/{self._owners}"

    def check_login(self, username, password, client_ip):
        if client_ip in self.throttled:
            return defer.succeed(AuthResult(None, throttled=True, verified=False))
        user = username.lower()
        ok = self.users.get(user) == password
        result = AuthResult(user if ok else None,
                            throttled=not ok and client_ip in self.throttle_on_failure)
        if self.hold_login is not None:
            held, self.hold_login = self.hold_login, None
            return held.addCallback(lambda _: result)
        return defer.succeed(result)

    def is_throttled(self, ip):
        return ip in self.throttled

    def lock(self, user, owner):
        if self.locks.get(user, owner) != owner:
            return defer.succeed(False)
        self.locks[user] = owner
        return defer.succeed(True)

    def refresh(self, user, owner):
        return defer.succeed(self.locks.get(user) == owner)

    def unlock(self, user, owner):
        if self.locks.get(user) == owner:
            del self.locks[user]
        return defer.succeed(None)

    def load_maildrop(self, user):
        if self.fail_open:
            return defer.fail(RuntimeError("database unavailable"))
        rows = [(mid, i + 1, f"uid-{mid}", len(prefix) + len(body))
                for i, (mid, body, prefix) in enumerate(self.boxes[user])]
        return defer.succeed(Maildrop([rows]))

    def open_message(self, message_id):
        if self.fail_open:
            return defer.fail(RuntimeError("disk on fire"))
        for box in self.boxes.values():
            for mid, body, prefix in box:
                if mid == message_id:
                    return defer.succeed(MessageContent(prefix, MessageSource(body)))
        return defer.succeed(None)

    def finish(self, user, owner, ids):
        if self.hold_finish is not None:
            held, self.hold_finish = self.hold_finish, None
            return held.addCallback(lambda _: self.finish(user, owner, ids))
        for box in self.boxes.values():
            box[:] = [m for m in box if m[0] not in ids]
        self.deleted.extend(ids)
        self.unlock(user, owner)
        return defer.succeed(len(ids))
