"""An in-memory IMailStore with folders, flags and modseqs for IMAP protocol unit tests.

It follows the store contract of mailet_mta/mailstore.py (select, changes,
store_flags, expunge_messages, begin_append, copy/move, folders, subscriptions) so
the session can be driven through StringTransport without a database.
"""

from __future__ import annotations

from array import array
from types import SimpleNamespace

from twisted.internet import defer

from mailet_mta.mail import MessageSource
from mailet_mta.mailstore import FolderExists, NoSuchFolder, OverQuota
from mailet_mta.storage.authenticator import AuthResult
from mailet_mta.storage.mailboxes import MessageContent


class _Folder:
    def __init__(self, name, validity, special=None):
        self.name, self.validity, self.special = name, validity, special
        self.uid_next = 1
        self.modseq = 1
        self.messages: list[dict] = []      # {id, uid, body, flags, modseq, date}
        self.tombstones: list[tuple[int, int]] = []   # (uid, modseq)

    def status(self):
        return SimpleNamespace(name=self.name, uid_validity=self.validity,
                               uid_next=self.uid_next, messages=len(self.messages),
                               highest_modseq=self.modseq, special_use=self.special)


class _Append:
    def __init__(self, store, user, folder):
        self.store, self.user, self.folder = store, user, folder
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data):
        self.parts.append(data)
        self.size += len(data)

    def finish(self, flags, internal_date):
        folder = self.store.folders[self.user].get(self.folder)
        if folder is None:
            return defer.fail(NoSuchFolder(self.folder))
        if self.store.quota_octets is not None and self.size > self.store.quota_octets:
            return defer.fail(OverQuota(self.user, 0, self.store.quota_octets, self.size))
        msg = self.store.add(self.user, b"".join(self.parts), self.folder, flags=flags,
                             date=internal_date or 0.0)
        return defer.succeed((folder.validity, msg["uid"]))

    def abort(self):
        self.parts = []


class MemoryIMAPStore:
    lease_seconds = 90.0
    max_message_size = 10_000_000
    changes_committed = 0

    def __init__(self, users=None):
        self.users = dict(users or {"bob@example.com": "secret"})
        self.folders: dict[str, dict[str, _Folder]] = {u: {} for u in self.users}
        self.subs: dict[str, set[str]] = {u: set() for u in self.users}
        self.throttled: set[str] = set()
        self.listeners: list = []
        self.quota_octets: int | None = None
        self._next_id = 1
        self._validity = 100
        for user in self.users:
            self._create(user, "INBOX")

    # -- helpers for tests ----------------------------------------------------------
    def _create(self, user, name, special=None):
        self._validity += 1
        folder = self.folders[user][name] = _Folder(name, self._validity, special)
        return folder

    def add(self, user, body: bytes, folder="INBOX", flags=(), date=0.0):
        f = self.folders[user][folder]
        f.modseq += 1
        msg = {"id": self._next_id, "uid": f.uid_next, "body": body,
               "flags": frozenset(flags), "modseq": f.modseq, "date": date}
        self._next_id += 1
        f.uid_next += 1
        f.messages.append(msg)
        self.changes_committed += 1
        self._tell(user, folder)
        return msg

    def _find(self, mid):
        for user, folders in self.folders.items():
            for folder in folders.values():
                for msg in folder.messages:
                    if msg["id"] == mid:
                        return user, folder, msg
        return None

    def _tell(self, user, folder):
        f = self.folders[user].get(folder)
        for who, name, listener in list(self.listeners):
            if who == user and name == folder:
                listener(f.status() if f else None)

    # -- logins ----------------------------------------------------------------------
    def prepare(self):
        return defer.succeed(None)

    def check_login(self, username, password, client_ip):
        if client_ip in self.throttled:
            return defer.succeed(AuthResult(None, throttled=True, verified=False))
        user = username.lower()
        ok = self.users.get(user) == password
        return defer.succeed(AuthResult(user if ok else None))

    def is_throttled(self, ip):
        return ip in self.throttled

    def ensure_user_folders(self, user):
        for name, special in (("Sent", "\\Sent"), ("Drafts", "\\Drafts"),
                              ("Trash", "\\Trash"), ("Junk", "\\Junk"),
                              ("Archive", "\\Archive")):
            if name not in self.folders[user]:
                self._create(user, name, special)
                self.subs[user].add(name)
        self.subs[user].add("INBOX")
        return defer.succeed(None)

    # -- folders ---------------------------------------------------------------------
    def list_folders(self, user):
        return defer.succeed([f.status() for _, f in sorted(self.folders[user].items())])

    def folder_status(self, user, folder):
        f = self.folders[user].get(folder)
        return defer.succeed(f.status()) if f else defer.fail(NoSuchFolder(folder))

    def create_folder(self, user, folder, exclusive=False):
        if folder in self.folders[user]:
            if exclusive:
                return defer.fail(FolderExists(folder))
            return self.folder_status(user, folder)
        parts = folder.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in self.folders[user]:
                self._create(user, parent)
        return defer.succeed(self._create(user, folder).status())

    def delete_folder(self, user, folder):
        if folder == "INBOX":
            return defer.fail(ValueError("INBOX cannot be deleted"))
        if self.folders[user].pop(folder, None) is None:
            return defer.fail(NoSuchFolder(folder))
        self._tell(user, folder)
        return defer.succeed(None)

    def rename_folder(self, user, old, new):
        folders = self.folders[user]
        if old not in folders:
            return defer.fail(NoSuchFolder(old))
        if new in folders:
            return defer.fail(FolderExists(new))
        if old == "INBOX":
            moved = self._create(user, new)
            moved.messages, folders["INBOX"].messages = folders["INBOX"].messages, []
            moved.uid_next = folders["INBOX"].uid_next
            return defer.succeed(None)
        for name in [n for n in folders if n == old or n.startswith(old + "/")]:
            f = folders.pop(name)
            f.name = new + name[len(old):]
            folders[f.name] = f
        return defer.succeed(None)

    def subscriptions(self, user):
        return defer.succeed(set(self.subs[user]))

    def set_subscribed(self, user, folder, on):
        (self.subs[user].add if on else self.subs[user].discard)(folder)
        return defer.succeed(None)

    def quota(self, user):
        usage = sum(len(m["body"]) for f in self.folders[user].values() for m in f.messages)
        return defer.succeed((usage, self.quota_octets))

    # -- IMAP views ------------------------------------------------------------------
    def select(self, user, folder):
        f = self.folders[user].get(folder)
        if f is None:
            return defer.fail(NoSuchFolder(folder))
        msgs = f.messages
        return defer.succeed(SimpleNamespace(
            status=f.status(), ids=array("q", [m["id"] for m in msgs]),
            uids=array("q", [m["uid"] for m in msgs]),
            sizes=array("q", [len(m["body"]) for m in msgs]),
            dates=array("d", [m["date"] for m in msgs]),
            modseqs=array("q", [m["modseq"] for m in msgs]),
            flags=[m["flags"] for m in msgs]))

    def changes(self, user, folder, since):
        f = self.folders[user].get(folder)
        if f is None:
            return defer.fail(NoSuchFolder(folder))
        updated = [(m["id"], m["uid"], len(m["body"]), m["date"], m["modseq"], m["flags"])
                   for m in f.messages if m["modseq"] > since]
        gone = sorted(uid for uid, modseq in f.tombstones if modseq > since)
        return defer.succeed(SimpleNamespace(status=f.status(), updated=updated,
                                             expunged_uids=gone))

    def read_headers(self, mid, limit):
        found = self._find(mid)
        if found is None:
            return defer.succeed(None)
        body = found[2]["body"]
        end = body.find(b"\r\n\r\n")
        return defer.succeed((body if end < 0 else body[:end + 4])[:limit])

    def read_headers_of(self, ids, limit):
        out = {}
        for mid in ids:
            self.read_headers(mid, limit).addCallback(
                lambda h, mid=mid: h is None or out.__setitem__(mid, h))
        return defer.succeed(out)

    def open_message(self, mid):
        found = self._find(mid)
        if found is None:
            return defer.succeed(None)
        return defer.succeed(MessageContent(b"", MessageSource(found[2]["body"])))

    def open_messages(self, ids):
        out = {}
        for mid in ids:
            found = self._find(mid)
            if found is not None:
                out[mid] = MessageContent(b"", MessageSource(found[2]["body"]))
        return defer.succeed(out)

    def read_messages(self, ids):
        out = {}
        for mid in ids:
            found = self._find(mid)
            if found is not None:
                out[mid] = found[2]["body"]
        return defer.succeed(out)

    # -- changes ---------------------------------------------------------------------
    def store_flags(self, ids, flags, mode, unchanged_since=None):
        updated, failed, told = {}, set(), set()
        for mid in ids:
            found = self._find(mid)
            if found is None:
                continue
            user, folder, msg = found
            if unchanged_since is not None and msg["modseq"] > unchanged_since:
                failed.add(mid)
                continue
            old = msg["flags"]
            new = {"add": old | flags, "remove": old - flags, "replace": frozenset(flags)}[mode]
            if new != old:
                folder.modseq += 1
                msg["flags"], msg["modseq"] = new, folder.modseq
                told.add((user, folder.name))
            updated[mid] = (msg["flags"], msg["modseq"])
        for user, name in told:
            self._tell(user, name)
        return defer.succeed(SimpleNamespace(updated=updated, failed=failed))

    def expunge_messages(self, user, folder, ids):
        f = self.folders[user][folder]
        doomed = set(ids)
        removed = [m["id"] for m in f.messages if m["id"] in doomed]
        if removed:
            f.modseq += 1
            f.tombstones += [(m["uid"], f.modseq) for m in f.messages if m["id"] in doomed]
            f.messages = [m for m in f.messages if m["id"] not in doomed]
            self.changes_committed += 1
            self._tell(user, folder)
        return defer.succeed(removed)

    def begin_append(self, user, folder):
        return _Append(self, user, folder)

    def copy_messages(self, user, ids, dest):
        d = self.folders[user].get(dest)
        if d is None:
            return defer.fail(NoSuchFolder(dest))
        pairs = []
        for mid in ids:
            found = self._find(mid)
            if found is None:
                continue
            msg = found[2]
            new = self.add(user, msg["body"], dest, msg["flags"], msg["date"])
            pairs.append((mid, new["uid"]))
        return defer.succeed((d.validity, pairs))

    def move_messages(self, user, folder, ids, dest):
        d = self.copy_messages(user, ids, dest)
        result = []
        d.addCallback(result.append)
        if not result:
            return d
        self.expunge_messages(user, folder, [mid for mid, _ in result[0][1]])
        return defer.succeed(result[0])

    # -- notifications -----------------------------------------------------------------
    def subscribe(self, user, folder, listener):
        entry = (user, folder, listener)
        self.listeners.append(entry)
        store = self

        class Subscription:
            def cancel(self):
                if entry in store.listeners:
                    store.listeners.remove(entry)
        return Subscription()
