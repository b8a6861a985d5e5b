"""The web mail's pages: log in, folders and messages, reading, writing, actions.

Each handler takes a :class:`~.webmail.WebCall` and returns (a Deferred of) a
:class:`~.http.Response`. Folders, UIDs and flags are those of the IMAP mail store; a
message is found by (folder, UID) in the user's own snapshot of that folder, so a
user can only ever name their own messages. SQL and blob reads go through the store's
Deferreds; MIME parsing, sanitising, searching and building run on worker threads.
"""

from __future__ import annotations

import hmac
import secrets
from bisect import bisect_left
from urllib.parse import quote

from twisted.internet import defer, threads
from twisted.logger import Logger

from ..mailstore import MessageTooLarge, NoSuchFolder, OverQuota, canonical_folder
from . import webmail_html as H
from . import webmail_message as M
from .http import HTTPError, Param, Response, Route
from .webmail import LOGIN_COOKIE, WebCall, html_answer, redirect
from .webmail_send import SendRefused, loopback_of, submit

log = Logger(namespace="mailet_mta.webmail")

HEADER_LIMIT = 16 * 1024      # octets of a header block read for the list
MAX_FOLDERS = 500             # folders shown (and counted) in the list
MAX_SELECTED = 1000           # messages one action may name
SEARCH_BATCH = 16             # messages read at once while searching
SEARCH_READ = 1024 * 1024     # octets of each message a text search reads
NOTICES = {"sent": "Your message was sent; a copy is in Sent.",
           "sent-no-copy": "Your message was sent, but no copy could be kept in Sent "
                           "(is your mailbox full?).",
           "moved": "Moved.", "deleted": "Deleted.", "flagged": "Done."}

FOLDER = Param("folder", {"type": "string", "minLength": 1, "maxLength": 300,
                          "default": "INBOX"})
UID = Param("uid", {"type": "integer", "minimum": 1, "maximum": 2**32 - 1}, required=True)


def _page(method, path, handler, query=(), public=False) -> Route:
    return Route(method, path, handler, handler.__doc__ or "", "webmail",
                 {200: ("a page", None)}, query=list(query), public=public)


class WebmailPages:
    """The handlers of one webmail listener (``service``: its WebmailService)."""

    def __init__(self, service, submission, max_message_size: int):
        self.service = service
        self.store = service.store
        self.config = service.config
        self.submission = submission
        self.max_message_size = max_message_size
        self.server_name = service.server.config.server_name

    def routes(self) -> list[Route]:
        page = Param("page", {"type": "integer", "minimum": 1, "maximum": 10**6,
                              "default": 1})
        return [
            _page("GET", "/", self.home, public=True),
            _page("GET", "/login", self.login_form, public=True),
            _page("POST", "/login", self.login, public=True),
            _page("POST", "/logout", self.logout),
            _page("GET", "/mail", self.folder_page, [
                FOLDER, page, Param("q", {"type": "string", "maxLength": 200, "default": ""}),
                Param("in", {"type": "string", "enum": ["all", "subject", "from", "body"],
                             "default": "all"}),
                Param("done", {"type": "string", "enum": sorted(NOTICES)})]),
            _page("GET", "/message", self.message, [
                FOLDER, UID, Param("images", {"type": "boolean", "default": False})]),
            _page("GET", "/message/part", self.part, [
                FOLDER, UID, Param("part", {"type": "integer", "minimum": 1,
                                            "maximum": M.MAX_PARTS}, required=True)]),
            _page("GET", "/compose", self.compose, [
                Param("mode", {"type": "string", "enum": ["new", "reply", "all", "forward"],
                               "default": "new"}),
                FOLDER, Param("uid", {"type": "integer", "minimum": 1,
                                      "maximum": 2**32 - 1})]),
            _page("POST", "/send", self.send),
            _page("POST", "/action", self.action),
        ]

    # -- logging in and out ----------------------------------------------------------------
    def home(self, call: WebCall):
        """The inbox, or the login page."""
        return redirect("/mail?folder=INBOX" if call.session else "/login")

    def login_form(self, call: WebCall):
        """The login form (with a double-submit CSRF token in a cookie)."""
        if call.session is not None:
            return redirect("/mail?folder=INBOX")
        token = secrets.token_urlsafe(32)
        self.service.router.set_cookie(call.request, LOGIN_COOKIE, token, 600)
        return html_answer(H.login_page(token))

    @defer.inlineCallbacks
    def login(self, call: WebCall):
        """Check the account's password (the authenticator and throttle of POP3)."""
        form, request = call.form, call.request
        cookie = (request.getCookie(LOGIN_COOKIE.encode()) or b"").decode("ascii", "replace")
        if not cookie or not hmac.compare_digest(cookie.encode(),
                                                 form.get("csrf").encode()):
            raise HTTPError(403, "Refused", "the login form is stale or from another site; "
                            "reload the login page")
        user, password = form.get("username").strip(), form.get("password")
        if not user or not password or len(user) > 320 or len(password) > 1024:
            return html_answer(H.login_page(cookie, "Enter your user name and password.",
                                            user[:320]), 400)
        ip = request.getClientAddress().host
        result = yield self.store.check_login(user, password, ip)
        if not result.verified:
            return html_answer(H.login_page(cookie, "Too many failed logins from your "
                                            "address; try again in a few minutes.",
                                            user), 429)
        if not result.ok:
            return html_answer(H.login_page(cookie, "Wrong user name or password.", user),
                               401)
        yield self.store.ensure_user_folders(result.user)
        session = yield self.service.sessions.create(result.user)
        log.info("webmail: {user} logged in from {ip}", user=result.user, ip=ip)
        router = self.service.router
        router.set_cookie(request, "mailet_session", session.id)
        router.set_cookie(request, LOGIN_COOKIE, "", 0)
        return redirect("/mail?folder=INBOX")

    @defer.inlineCallbacks
    def logout(self, call: WebCall):
        """End the session (in every process)."""
        yield self.service.sessions.end(call.session.id)
        self.service.router.set_cookie(call.request, "mailet_session", "", 0)
        return redirect("/login")

    # -- folders and lists -----------------------------------------------------------------
    def _snapshot(self, user: str, folder: str) -> defer.Deferred:
        d = self.store.select(user, canonical_folder(folder))

        def missing(failure):
            failure.trap(NoSuchFolder)
            raise HTTPError(404, "No such folder", f"you have no folder {folder!r}")
        return d.addErrback(missing)

    @defer.inlineCallbacks
    def _folders(self, user: str):
        """(name, unread) of the user's folders, INBOX first."""
        statuses = yield self.store.list_folders(user)
        names = sorted((s.name for s in statuses), key=lambda n: (n != "INBOX", n))
        names = names[:MAX_FOLDERS]
        snaps = yield defer.gatherResults(
            [self.store.select(user, n).addErrback(lambda _f: None) for n in names],
            consumeErrors=True)
        counts = yield threads.deferToThread(
            lambda: [sum(1 for f in s.flags if "\\Seen" not in f) if s else 0
                     for s in snaps])
        return list(zip(names, counts))

    @staticmethod
    def _id_of(snapshot, uid: int) -> int:
        i = bisect_left(snapshot.uids, uid)
        if i >= len(snapshot.uids) or snapshot.uids[i] != uid:
            raise HTTPError(404, "No such message", "the message is not in this folder "
                            "(moved or deleted meanwhile?)")
        return i

    def _read(self, message_id: int, limit: int | None = None) -> defer.Deferred:
        """The first ``limit`` octets of a message (default: the largest message the
        store takes, and a margin for trace headers), or 404."""
        limit = limit or self.max_message_size + 1024 * 1024

        def read(content):
            if content is None:
                raise HTTPError(404, "No such message", "the message was deleted")
            return threads.deferToThread(_join, content, limit)
        return self.store.open_message(message_id).addCallback(read)

    @defer.inlineCallbacks
    def folder_page(self, call: WebCall):
        """One page of a folder, newest first, or the messages a search found."""
        p, user = call.params, call.session.user
        folder = canonical_folder(p["folder"])
        snap = yield self._snapshot(user, folder)
        folders = yield self._folders(user)
        size = self.config.max_page_size
        if p["q"]:
            order = yield self._search(snap, p["q"], p["in"])
        else:
            order = range(len(snap) - 1, -1, -1)
        total = len(order)
        pages = (total + size - 1) // size
        page = min(p["page"], max(pages, 1))
        shown = list(order[(page - 1) * size: page * size])
        heads = yield defer.gatherResults(
            [self.store.read_headers(snap.ids[i], HEADER_LIMIT) for i in shown],
            consumeErrors=True)
        infos = yield threads.deferToThread(lambda: [M.summary(h or b"") for h in heads])
        rows = [(snap.uids[i], info, snap.flags[i], snap.sizes[i], snap.dates[i])
                for i, info in zip(shown, infos)]
        body = H.message_list(folder, rows, page, pages, total, call.session.csrf, folders,
                              p["q"], p["in"], NOTICES.get(p["done"] or "", ""))
        return html_answer(H.layout(folder, body, user, call.session.csrf,
                                    H.folder_nav(folders, folder), folder))

    @defer.inlineCallbacks
    def _search(self, snap, query: str, where: str):
        """Indexes of the matching messages, newest first, among the newest
        ``max_search_messages``."""
        newest = range(len(snap) - 1, -1, -1)[:self.config.max_search_messages]
        found = []
        for start in range(0, len(newest), SEARCH_BATCH):
            batch = newest[start:start + SEARCH_BATCH]
            if where in ("subject", "from"):
                datas = yield defer.gatherResults(
                    [self.store.read_headers(snap.ids[i], HEADER_LIMIT) for i in batch],
                    consumeErrors=True)
            else:
                datas = yield defer.gatherResults(
                    [self._read(snap.ids[i], SEARCH_READ).addErrback(lambda _f: None)
                     for i in batch],
                    consumeErrors=True)
            hits = yield threads.deferToThread(
                lambda ds: [d is not None and M.matches(d, query, where) for d in ds], datas)
            found += [i for i, hit in zip(batch, hits) if hit]
        return found

    # -- reading ---------------------------------------------------------------------------
    @defer.inlineCallbacks
    def message(self, call: WebCall):
        """One message: headers, text, sanitised HTML, attachments; marks it read."""
        p, user = call.params, call.session.user
        folder = canonical_folder(p["folder"])
        snap = yield self._snapshot(user, folder)
        i = self._id_of(snap, p["uid"])
        data = yield self._read(snap.ids[i])
        msg = yield threads.deferToThread(M.read, data, p["images"])
        flags = set(snap.flags[i])
        if "\\Seen" not in flags:
            yield self.store.store_flags([snap.ids[i]], {"\\Seen"}, "add")
        folders = yield self._folders(user)
        body = H.message_page(folder, p["uid"], msg, flags, call.session.csrf, folders,
                              p["images"])
        headers = {}
        if p["images"]:
            from .webmail import CSP_IMAGES

            headers["Content-Security-Policy"] = CSP_IMAGES
        return html_answer(H.layout(msg.subject or "(no subject)", body, user,
                                    call.session.csrf, H.folder_nav(folders, folder),
                                    folder), headers=headers)

    @defer.inlineCallbacks
    def part(self, call: WebCall):
        """An attachment, as a download (never rendered by the browser)."""
        p = call.params
        snap = yield self._snapshot(call.session.user, p["folder"])
        i = self._id_of(snap, p["uid"])
        data = yield self._read(snap.ids[i])
        found = yield threads.deferToThread(M.attachment, data, p["part"])
        if found is None:
            raise HTTPError(404, "No such attachment", "the message has no such part")
        name, payload = found
        ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100]
        return Response(200, raw=payload, content_type="application/octet-stream",
                        headers={"Content-Disposition":
                                 f"attachment; filename=\"{ascii_name or 'attachment'}\"; "
                                 f"filename*=UTF-8''{quote(name[:200], safe='')}"})

    # -- writing ---------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _original(self, user: str, folder: str, uid: int):
        snap = yield self._snapshot(user, folder)
        i = self._id_of(snap, uid)
        data = yield self._read(snap.ids[i])
        return snap.ids[i], data

    @defer.inlineCallbacks
    def compose(self, call: WebCall):
        """The form for a new message, a reply (to the sender or all) or a forward."""
        p, session = call.params, call.session
        fields: dict = {}
        if p["mode"] != "new" and p["uid"]:
            _mid, data = yield self._original(session.user, p["folder"], p["uid"])
            msg = yield threads.deferToThread(M.read, data)
            subject = msg.subject
            if p["mode"] == "forward":
                if not subject.lower().startswith("fwd:"):
                    subject = "Fwd: " + subject
                fields = {"subject": subject}
            else:
                if not subject.lower().startswith("re:"):
                    subject = "Re: " + subject
                to = msg.reply_to or msg.sender
                cc = ""
                if p["mode"] == "all":
                    me = session.user.lower()
                    others = [a for a in M.addresses_quiet(msg.to + ", " + msg.cc)
                              if a.lower() != me and a.lower() not in to.lower()]
                    cc = ", ".join(others)
                body = yield threads.deferToThread(M.quoted, msg)
                fields = {"to": to, "cc": cc, "subject": subject, "body": body}
            fields.update(reply_folder=canonical_folder(p["folder"]), reply_uid=p["uid"],
                          mode=p["mode"])
        page = H.compose_page(session.csrf, self.max_message_size, **fields)
        return html_answer(H.layout("Write", page, session.user, session.csrf))

    @defer.inlineCallbacks
    def send(self, call: WebCall):
        """Send through the submission listener as the user; keep a copy in Sent."""
        form, session = call.form, call.session
        mode = form.get("mode", "new")

        def again(error: str, status: int = 422):
            page = H.compose_page(session.csrf, self.max_message_size, form.get("to"),
                                  form.get("cc"), form.get("subject"), form.get("body"),
                                  form.get("ref_folder"), _int(form.get("ref_uid")),
                                  mode, error)
            return html_answer(H.layout("Write", page, session.user, session.csrf), status)

        try:
            to, cc, bcc = (M.addresses(form.get(n)) for n in ("to", "cc", "bcc"))
        except ValueError as exc:
            return again(f"Check the addresses: {exc}.")
        if not (to or cc or bcc):
            return again("Name at least one recipient.")
        original = None
        ref_uid = _int(form.get("ref_uid"))
        if ref_uid and mode in ("reply", "all", "forward"):
            original = yield self._original(session.user, form.get("ref_folder", "INBOX"),
                                            ref_uid)
        info = None
        if original is not None and mode != "forward":
            info = yield threads.deferToThread(M.read, original[1])
        sender = session.user if "@" in session.user else f"{session.user}@{self.server_name}"
        draft = M.Draft(
            sender, to, cc, " ".join(form.get("subject").split())[:998],
            form.get("body").replace("\r\n", "\n"),
            in_reply_to=info.message_id if info else "",
            references=info.references if info else "",
            attachments=[(name, kind, data) for field_name, name, kind, data in form.files
                         if field_name == "files"],
            forwarded=original[1] if original is not None and mode == "forward" else None,
            domain=sender.rpartition("@")[2] or self.server_name)
        data = yield threads.deferToThread(M.build, draft)
        if len(data) > self.max_message_size:
            return again(f"The message is {len(data)} octets with its attachments; at "
                         f"most {self.max_message_size} can be sent.", 413)
        listener = self.submission
        host = loopback_of(listener.listening_port.getHost().host)
        try:
            refused = yield threads.deferToThread(
                submit, host, listener.port, listener.config.implicit_tls,
                listener.config.require_ssl, session.user, self.service.credential.secret,
                sender, to + cc + bcc, data)
        except SendRefused as exc:
            return again(f"Not sent: {exc}", 502)
        kept = yield self._keep_sent(session.user, data)
        if original is not None and mode != "forward":
            yield self.store.store_flags([original[0]], {"\\Answered"}, "add")
        if refused:
            return again("Sent, but these recipients were refused: " + ", ".join(
                sorted(refused)), 200)
        return redirect("/mail?folder=INBOX&done=" + ("sent" if kept else "sent-no-copy"))

    @defer.inlineCallbacks
    def _keep_sent(self, user: str, data: bytes):
        """Append a sent message to Sent (flag \\Seen). The mail is gone already, so a
        failure (quota, a deleted Sent folder) is told, not raised: True when kept."""
        append = self.store.begin_append(user, "Sent")
        append.write(data)
        try:
            yield append.finish({"\\Seen"}, None)
        except (OverQuota, NoSuchFolder, MessageTooLarge) as exc:
            log.info("webmail: {user}'s sent message not kept in Sent: {error}", user=user,
                     error=exc)
            return False
        return True

    # -- actions ---------------------------------------------------------------------------
    @defer.inlineCallbacks
    def action(self, call: WebCall):
        """Delete (to Trash), move, flag or mark read the chosen messages."""
        form, user = call.form, call.session.user
        folder = canonical_folder(form.get("folder", "INBOX"))
        op = form.get("op")
        uids = [int(u) for u in form.fields.get("uid", []) if u.isdigit()]
        if len(uids) > MAX_SELECTED:
            raise HTTPError(400, "Too many", f"at most {MAX_SELECTED} messages at once")
        snap = yield self._snapshot(user, folder)
        ids = []
        for uid in uids:
            i = bisect_left(snap.uids, uid)
            if i < len(snap.uids) and snap.uids[i] == uid:
                ids.append(snap.ids[i])
        back = f"/mail?folder={quote(folder, safe='')}"
        if not ids:
            return redirect(back)
        if op == "delete":
            if folder == "Trash":
                yield self.store.expunge_messages(user, folder, ids)
            else:
                yield self._move(user, folder, ids, "Trash")
            return redirect(back + "&done=deleted")
        if op == "move":
            dest = canonical_folder(form.get("dest"))
            if not dest or dest == folder:
                raise HTTPError(400, "Where to?", "choose another folder to move to")
            yield self._move(user, folder, ids, dest)
            return redirect(back + "&done=moved")
        changes = {"flag": ("\\Flagged", "add"), "unflag": ("\\Flagged", "remove"),
                   "seen": ("\\Seen", "add"), "unseen": ("\\Seen", "remove")}
        if op not in changes:
            raise HTTPError(400, "Unknown action", f"no action {op!r}")
        flag, how = changes[op]
        yield self.store.store_flags(ids, {flag}, how)
        return redirect(back + "&done=flagged")

    def _move(self, user: str, folder: str, ids, dest: str) -> defer.Deferred:
        d = self.store.move_messages(user, folder, ids, dest)

        def missing(failure):
            failure.trap(NoSuchFolder)
            raise HTTPError(404, "No such folder", f"you have no folder {dest!r}")
        return d.addErrback(missing)


def _join(content, limit: int) -> bytes:
    """Read a message's chunks (on a worker thread), at most ``limit`` octets."""
    out, size = [], 0
    chunks = content.chunks(64 * 1024)
    try:
        for chunk in chunks:
            out.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return b"".join(out)


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 11 else None
