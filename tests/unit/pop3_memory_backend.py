"""An in-memory IMaildropStore (POP3's part of IMailStore) for protocol unit tests."""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from mailet_mta.mail import MessageSource
from mailet_mta.mailstore import FolderStatus, IMaildropStore, MessageList, NoSuchFolder
from mailet_mta.storage.authenticator import AuthResult
from mailet_mta.storage.mailboxes import MessageContent


@implementer(IMaildropStore)
class MemoryBackend:
    lease_seconds = 90.0

    def __init__(self, users=None, messages=None):
        self.users = dict(users or {"bob@example.com": "secret"})
        # user -> list of (id, body bytes, prefix)
        self.boxes = {u: [] for u in self.users}
        self.flags: dict[int, frozenset] = {}
        self.locks: dict[str, str] = {}
        self.throttled: set[str] = set()
        self.throttle_on_failure: set[str] = set()   # a failure from these blocks them
        self.deleted: list[int] = []
        self.hold_login: defer.Deferred | None = None
        self.fail_open = False
        self.hold_finish: defer.Deferred | None = None
        self.listeners: list = []
        self._next_id = 1
        self._owners = 0
        for user, body in messages or ():
            self.add(user, body)

    def add(self, user: str, body: bytes, prefix: bytes = b"") -> int:
        mid = self._next_id
        self._next_id += 1
        self.boxes[user].append((mid, body, prefix))
        self._tell(user)
        return mid

    def prepare(self):
        return defer.succeed(None)

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

    # -- folders: every user has INBOX ---------------------------------------------------
    def _status(self, user) -> FolderStatus:
        box = self.boxes[user]
        return FolderStatus("INBOX", 1, self._next_id, len(box))

    def list_folders(self, user):
        return defer.succeed([self._status(user)] if user in self.boxes else [])

    def folder_status(self, user, folder):
        if folder != "INBOX" or user not in self.boxes:
            return defer.fail(NoSuchFolder(folder))
        return defer.succeed(self._status(user))

    def create_folder(self, user, folder, exclusive=False):
        return self.folder_status(user, folder)

    # -- messages ------------------------------------------------------------------------
    def load_listing(self, user, folder):
        if self.fail_open:
            return defer.fail(RuntimeError("database unavailable"))
        rows = [(mid, mid, f"uid-{mid}", len(prefix) + len(body))
                for mid, body, prefix in self.boxes[user]] if folder == "INBOX" else []
        return defer.succeed(MessageList([rows]))

    def _find(self, message_id):
        for box in self.boxes.values():
            for mid, body, prefix in box:
                if mid == message_id:
                    return MessageContent(prefix, MessageSource(body))
        return None

    def open_message(self, message_id):
        if self.fail_open:
            return defer.fail(RuntimeError("disk on fire"))
        return defer.succeed(self._find(message_id))

    def open_messages(self, message_ids):
        if self.fail_open:
            return defer.fail(RuntimeError("disk on fire"))
        found = {mid: self._find(mid) for mid in message_ids}
        return defer.succeed({mid: c for mid, c in found.items() if c is not None})

    def get_flags(self, message_ids):
        return defer.succeed({mid: self.flags.get(mid, frozenset())
                              for mid in message_ids if self._find(mid) is not None})

    def set_flags(self, message_ids, flags, mode):
        flags = frozenset(flags)
        for mid in message_ids:
            old = self.flags.get(mid, frozenset())
            self.flags[mid] = {"add": old | flags, "remove": old - flags,
                               "replace": flags}[mode]
        return self.get_flags(message_ids)

    def _remove(self, user, ids) -> int:
        box, doomed = self.boxes[user], set(ids)
        before = len(box)
        box[:] = [m for m in box if m[0] not in doomed]
        self.deleted.extend(ids)
        if before != len(box):
            self._tell(user)
        return before - len(box)

    def expunge(self, user, folder, message_ids):
        return defer.succeed(self._remove(user, list(message_ids)))

    def finish(self, user, owner, ids):
        if self.hold_finish is not None:
            held, self.hold_finish = self.hold_finish, None
            return held.addCallback(lambda _: self.finish(user, owner, ids))
        self._remove(user, list(ids))
        self.unlock(user, owner)
        return defer.succeed(len(ids))

    # -- change notifications ------------------------------------------------------------
    def subscribe(self, user, folder, listener):
        entry = (user, listener)
        self.listeners.append(entry)

        class Subscription:
            def cancel(_self):
                if entry in self.listeners:
                    self.listeners.remove(entry)
        return Subscription()

    def _tell(self, user) -> None:
        for who, listener in list(self.listeners):
            if who == user:
                listener(self._status(user))
