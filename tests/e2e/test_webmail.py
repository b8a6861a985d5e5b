"""The web mail against the real server over HTTP (httpx): log in, read, write, act.

One server per module with SMTP (strangers), submission (users), POP3 and the
``webmail`` listener on free loopback ports. Mail arrives over SMTP, is read in the
web mail, and replies go out through the submission listener to another user's POP3
mailbox.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import re
import smtplib
import ssl
from urllib.parse import urlencode

import httpx
import pytest

from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

ALICE = ("alice@example.com", "alice-secret-1")
BOB = ("bob@example.com", "bob-secret-2")
MAX_BODY = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webmail")
    config = base_config(tmp / "var", servernames=["example.com"])
    config["webmail"] = {"enabled": True, "port": 0, "maxBodySize": MAX_BODY,
                         "pageSize": 5,
                         "hostnames": ["mail.example.test", "*.webmail.test"]}
    # The refusals of the internal credential are what these tests look at, not the
    # second each failed AUTH waits by default (tests/unit/test_smtp_codes.py).
    for listener in config["smtpservers"]:
        listener["authFailureDelay"] = 0
    srv = ServerProcess(tmp, config)
    srv.add_user(*ALICE)
    srv.add_user(*BOB)
    srv.start()
    yield srv
    srv.stop()


def base(server) -> str:
    return f"http://127.0.0.1:{server.port('webmail')}"


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text[:2000]
    return found.group(1)


@contextlib.contextmanager
def login(server, user=ALICE):
    """An httpx client with a session of ``user``."""
    with httpx.Client(base_url=base(server), timeout=30) as client:
        page = client.get("/login")
        answer = client.post("/login", data={"csrf": csrf_of(page.text),
                                             "username": user[0], "password": user[1]})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/mail?folder=INBOX"
        yield client


def deliver(server, rcpt: str, subject: str, body: str, content_type="text/plain",
            extra: str = "") -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail("carol@remote.test", [rcpt],
                        f"From: Carol <carol@remote.test>\r\nTo: {rcpt}\r\n"
                        f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}"
                        f"@remote.test>\r\nMIME-Version: 1.0\r\n{extra}"
                        f"Content-Type: {content_type}\r\n\r\n{body}\r\n".encode())


def uid_of(client: httpx.Client, subject: str, folder: str = "INBOX") -> int:
    def find():
        page = client.get("/mail", params={"folder": folder})
        for uid, text in re.findall(r'href="/message\?folder=[^&]+&amp;uid=(\d+)">([^<]*)<',
                                    page.text):
            if text == subject:
                return int(uid)
        return None
    return wait_for(find, what=f"{subject!r} in {folder}")


# -- logging in --------------------------------------------------------------------------
def test_pages_need_a_session_and_login_sets_a_strict_httponly_cookie(server):
    with httpx.Client(base_url=base(server), timeout=30) as anon:
        answer = anon.get("/mail")
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
        page = anon.get("/login")
        assert page.status_code == 200 and 'for="password"' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "<script>" not in page.text            # only <script src=...>
    with login(server) as client:
        cookie = [c for c in client.cookies.jar if c.name == "mailet_session"][0]
        assert len(cookie.value) >= 43                 # 256 bits, base64url
        assert client.get("/login").status_code == 303  # a session goes straight in
    with httpx.Client(base_url=base(server), timeout=30) as other:
        page = other.get("/login")
        answer = other.post("/login", data={"csrf": csrf_of(page.text),
                                            "username": ALICE[0], "password": ALICE[1]})
        header = answer.headers["set-cookie"]
        assert "HttpOnly" in header and "samesite=strict" in header.lower()
        assert "Secure" not in header                     # plain HTTP on loopback


def test_a_wrong_password_is_refused_and_a_login_without_its_token_is_refused(server):
    with httpx.Client(base_url=base(server), timeout=30) as client:
        page = client.get("/login")
        wrong = client.post("/login", data={"csrf": csrf_of(page.text),
                                            "username": BOB[0], "password": "nope"})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        assert "mailet_session" not in client.cookies
        forged = client.post("/login", data={"csrf": "forged", "username": BOB[0],
                                             "password": BOB[1]})
        assert forged.status_code == 403 and "mailet_session" not in client.cookies


def test_a_post_without_the_csrf_token_is_refused(server):
    deliver(server, ALICE[0], "csrf target", "keep me")
    with login(server) as client:
        uid = uid_of(client, "csrf target")
        for data in ({"folder": "INBOX", "uid": str(uid), "op": "delete"},
                     {"folder": "INBOX", "uid": str(uid), "op": "delete", "csrf": "x" * 43}):
            answer = client.post("/action", data=data)
            assert answer.status_code == 403, answer.text
        sent = client.post("/send", data={"to": BOB[0], "subject": "forged", "body": "x"})
        assert sent.status_code == 403
        assert uid_of(client, "csrf target") == uid      # still there
        # and the logout form needs it too
        assert client.post("/logout", data={}).status_code == 403
        assert client.get("/mail").status_code == 200


# -- reading -----------------------------------------------------------------------------
def test_list_pages_newest_first_and_read_a_mail_delivered_over_smtp(server):
    for n in range(7):
        deliver(server, BOB[0], f"paging {n}", f"text number {n}")
    with login(server, BOB) as client:
        uid_of(client, "paging 6")
        wait_for(lambda: client.get("/mail", params={"folder": "INBOX"}).text.count(
            "paging ") >= 5, what="page 1")
        first = client.get("/mail", params={"folder": "INBOX"}).text
        subjects = re.findall(r">(paging \d)<", first)
        assert subjects == ["paging 6", "paging 5", "paging 4", "paging 3", "paging 2"]
        assert 'Page 1 of ' in first and 'rel="next"' in first
        assert re.search(r'INBOX <span class="unread">\(\d+', first)
        second = client.get("/mail", params={"folder": "INBOX", "page": 2}).text
        assert re.findall(r">(paging \d)<", second)[:2] == ["paging 1", "paging 0"]
        uid = uid_of(client, "paging 3")
        page = client.get("/message", params={"folder": "INBOX", "uid": uid})
        assert page.status_code == 200
        assert "text number 3" in page.text and "Carol &lt;carol@remote.test&gt;" in page.text
        # reading marked it read: the list no longer shows it bold
        listing = client.get("/mail", params={"folder": "INBOX"}).text
        row = re.search(r'<tr([^>]*)>(?:(?!</tr>).)*>paging 3<', listing, re.S)
        assert row and "unread" not in row.group(1)
        missing = client.get("/message", params={"folder": "INBOX", "uid": 999999})
        assert missing.status_code == 404
        assert client.get("/mail", params={"folder": "Nope"}).status_code == 404
        assert client.get("/mail", params={"page": "x"}).status_code == 422


def test_hostile_html_is_stripped_and_remote_images_wait_for_the_user(server):
    hostile = ('<p onclick="window.__pwned=1">hi<script>window.__pwned=1</script></p>'
               '<img src="https://tracker.example/p.gif" onerror="window.__pwned=1">'
               '<iframe src="https://evil.example/"></iframe><form action="https://evil.'
               'example/"><input name=a></form><object data="x.swf"></object>'
               '<a href="javascript:alert(1)">click</a><svg onload="alert(1)"></svg>'
               '<style>body{display:none}</style><b>bold stays</b>')
    deliver(server, ALICE[0], "hostile html", hostile, "text/html; charset=utf-8")
    with login(server) as client:
        uid = uid_of(client, "hostile html")
        page = client.get("/message", params={"folder": "INBOX", "uid": uid})
        assert page.status_code == 200
        srcdoc = re.search(r'<iframe class="html-body"[^>]*sandbox="([^"]*)"[^>]*'
                           r'srcdoc="([^"]*)"', page.text)
        assert srcdoc, page.text
        assert "allow-scripts" not in srcdoc.group(1)
        inner = srcdoc.group(2)
        for bad in ("script", "onclick", "onerror", "onload", "iframe", "form", "object",
                    "javascript:", "tracker.example", "style", "__pwned"):
            assert bad not in inner.lower(), (bad, inner)
        assert "bold stays" in inner
        assert "Remote images are not shown" in page.text
        assert "img-src 'self' data:;" in page.headers["content-security-policy"]
        shown = client.get("/message", params={"folder": "INBOX", "uid": uid,
                                               "images": "true"})
        assert "tracker.example/p.gif" in shown.text
        inner = re.search(r'srcdoc="([^"]*)"', shown.text).group(1).lower()
        assert "onerror" not in inner and "script" not in inner, inner
        assert "https:" in shown.headers["content-security-policy"]


# -- writing -----------------------------------------------------------------------------
def test_reply_with_an_attachment_arrives_in_bobs_pop3_mailbox_and_is_kept_in_sent(server):
    deliver(server, ALICE[0], "question for alice", "What is the answer?")
    with login(server) as client:
        uid = uid_of(client, "question for alice")
        form = client.get("/compose", params={"mode": "reply", "folder": "INBOX",
                                              "uid": uid})
        assert form.status_code == 200
        assert 'value="Re: question for alice"' in form.text
        assert "&gt; What is the answer?" in form.text
        answer = client.post("/send", data={
            "csrf": csrf_of(form.text), "to": BOB[0], "cc": "", "bcc": "",
            "subject": "Re: question for alice", "body": "It is 42.\n",
            "mode": "reply", "ref_folder": "INBOX", "ref_uid": str(uid)},
            files=[("files", ("notes.txt", b"attached notes\n", "text/plain"))])
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/mail?folder=INBOX&done=sent"

        def arrived():
            return [m for m in pop3_messages(server, *BOB) if b"It is 42." in m]
        raw = wait_for(arrived, what="the reply in bob's POP3 mailbox")[0]
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["From"] == ALICE[0] and msg["Subject"] == "Re: question for alice"
        assert msg["In-Reply-To"] == "<question.for.alice@remote.test>"
        assert b"Received: from webmail.localhost" in raw     # through the submission path
        names = [p.get_filename() for p in msg.iter_attachments()]
        assert names == ["notes.txt"]
        sent_uid = uid_of(client, "Re: question for alice", "Sent")
        copy = client.get("/message", params={"folder": "Sent", "uid": sent_uid})
        assert "It is 42." in copy.text and "notes.txt" in copy.text
        listing = client.get("/mail", params={"folder": "INBOX", "done": "sent"}).text
        assert "Your message was sent" in listing
        replied = client.get("/message", params={"folder": "INBOX", "uid": uid})
        assert replied.status_code == 200


def test_reply_all_copies_the_other_recipients_but_not_the_user(server):
    deliver(server, ALICE[0], "for both", "hello both",
            extra=f"Cc: {BOB[0]}, Dave <dave@remote.test>\r\n")
    with login(server) as client:
        uid = uid_of(client, "for both")
        form = client.get("/compose", params={"mode": "all", "folder": "INBOX", "uid": uid})
        to = re.search(r'id="to" name="to" value="([^"]*)"', form.text).group(1)
        cc = re.search(r'id="cc" name="cc" value="([^"]*)"', form.text).group(1)
        assert to == "Carol &lt;carol@remote.test&gt;"
        assert cc == f"{BOB[0]}, dave@remote.test"


def test_forward_attaches_the_original_and_bad_addresses_are_refused(server):
    deliver(server, ALICE[0], "to forward", "forward me")
    with login(server) as client:
        uid = uid_of(client, "to forward")
        form = client.get("/compose", params={"mode": "forward", "folder": "INBOX",
                                              "uid": uid})
        token = csrf_of(form.text)
        bad = client.post("/send", data={"csrf": token, "to": "not an address, <x>",
                                         "subject": "s", "body": "b"})
        assert bad.status_code == 422 and "Check the addresses" in bad.text
        none = client.post("/send", data={"csrf": token, "to": "", "subject": "s"})
        assert none.status_code == 422
        ok = client.post("/send", data={"csrf": token, "to": BOB[0], "subject": "Fwd: to "
                                        "forward", "body": "see below", "mode": "forward",
                                        "ref_folder": "INBOX", "ref_uid": str(uid)})
        assert ok.status_code == 303, ok.text
        raw = wait_for(lambda: [m for m in pop3_messages(server, *BOB)
                                if b"Fwd: to forward" in m], what="the forward")[0]
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        inner = [p for p in msg.iter_attachments() if p.get_content_type() == "message/rfc822"]
        assert inner and "forward me" in inner[0].as_string()


def test_a_sender_the_user_may_not_use_is_refused_by_the_submission_listener(server):
    with login(server) as client:
        form = client.get("/compose")
        answer = client.post("/send", data={"csrf": csrf_of(form.text),
                                            "to": "someone@remote.test", "subject": "x",
                                            "body": "relay?"})
        # remote recipients are fine for an authenticated user: accepted for delivery
        assert answer.status_code == 303, answer.text


# -- the internal credential the web mail sends with -------------------------------------
WEBMAIL_ID = "mailet-mta.webmail"


def plain(authzid: str, authcid: str, password: str) -> str:
    return "PLAIN " + base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


def secret_of(server) -> str:
    return (server.data_dir / "webmail-submission.secret").read_text().strip()


def test_the_webmail_secret_is_a_private_file_and_a_send_is_logged_as_webmail_for_the_user(
        server):
    path = server.data_dir / "webmail-submission.secret"
    assert path.stat().st_mode & 0o777 == 0o600 and len(secret_of(server)) >= 43
    with login(server) as client:
        form = client.get("/compose")
        answer = client.post("/send", data={"csrf": csrf_of(form.text),
                                            "to": BOB[0], "subject": "via the credential",
                                            "body": "no password kept"})
        assert answer.status_code == 303, answer.text
    wait_for(lambda: "webmail for alice@example.com" in server.log_text(),
             what="the log line of the web mail's login")
    assert secret_of(server) not in server.log_text()


def test_acting_as_a_user_without_the_secret_is_refused_with_535(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        code, ehlo = client.ehlo("probe.test")
        assert b"AUTH PLAIN LOGIN" in ehlo and b"webmail" not in ehlo.lower()
        for password in ("wrong", "", secret_of(server)[:-1], secret_of(server) + "x"):
            assert client.docmd("AUTH", plain(ALICE[0], WEBMAIL_ID, password))[0] == 535
        # the secret under another authentication identity is refused too
        assert client.docmd("AUTH", plain(ALICE[0], ALICE[0] + "x", secret_of(server)))[0] \
            == 535
        assert client.docmd("MAIL", "FROM:<alice@example.com>")[0] == 530
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.ehlo("probe.test")
        # an unknown user, even with the secret
        assert client.docmd("AUTH", plain("nobody@example.com", WEBMAIL_ID,
                                          secret_of(server)))[0] == 535


def test_the_secret_acts_as_the_user_with_the_users_own_policies(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.ehlo("probe.test")
        assert client.docmd("AUTH", plain(ALICE[0], WEBMAIL_ID, secret_of(server)))[0] == 235
        # verifyIdentity: the user may not send as another local user
        assert client.docmd("MAIL", "FROM:<bob@example.com>")[0] == 553
        assert client.docmd("MAIL", "FROM:<alice@example.com>")[0] == 250
        client.rset()


def test_a_user_logged_in_with_her_own_password_cannot_act_as_another_user(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.ehlo("probe.test")
        assert client.docmd("AUTH", plain(BOB[0], ALICE[0], ALICE[1]))[0] == 535
        assert client.docmd("MAIL", "FROM:<bob@example.com>")[0] == 530
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.ehlo("probe.test")       # her own login, authzid = herself, still works
        assert client.docmd("AUTH", plain(ALICE[0], ALICE[0], ALICE[1]))[0] == 235


def test_only_the_configured_host_names_and_ip_literals_are_answered(server):
    port = server.port("webmail")

    def status(host: str) -> int:
        return httpx.get(f"{base(server)}/login", headers={"Host": host},
                         timeout=30).status_code

    assert status(f"127.0.0.1:{port}") == 200 and status(f"[::1]:{port}") == 200
    assert status(f"mail.example.test:{port}") == 200 and status("a.webmail.test") == 200
    # hostnames replaces the default names: localhost and the servername are refused
    for host in ("localhost", "example.com", "webmail.test", "rebound.attacker.test",
                 "mail.example.test.attacker.test"):
        assert status(host) == 421, host
    answer = httpx.get(f"{base(server)}/login", headers={"Host": "evil.test"}, timeout=30)
    assert "Misdirected request" in answer.text and "text/html" in answer.headers[
        "content-type"]
    assert "mailet_login" not in answer.headers.get("set-cookie", "")
    # a POST with a foreign Host is refused before the session or form is looked at
    with login(server) as client:
        form = client.get("/compose")
        answer = client.post("/send", headers={"Host": "evil.test"},
                             data={"csrf": csrf_of(form.text), "to": BOB[0],
                                   "subject": "rebound", "body": "x"})
        assert answer.status_code == 421


def test_a_request_over_max_body_size_is_refused_with_413(server):
    with login(server) as client:
        form = client.get("/compose")
        answer = client.post("/send", data={"csrf": csrf_of(form.text), "to": BOB[0]},
                             files=[("files", ("big.bin", b"x" * (MAX_BODY + 1000),
                                               "application/octet-stream"))])
        assert answer.status_code == 413


def test_an_action_names_at_most_1000_messages_and_a_form_at_most_1024_fields(server):
    with login(server) as client:
        token = csrf_of(client.get("/mail").text)
        base_fields = [("csrf", token), ("folder", "INBOX"), ("op", "seen")]
        many = client.post("/action", content=urlencode(
            base_fields + [("uid", str(n)) for n in range(1, 1002)]),
            headers={"content-type": "application/x-www-form-urlencoded"})
        assert many.status_code == 400 and "at most 1000" in many.text
        fields = client.post("/action", content=urlencode(
            base_fields + [(f"f{n}", "1") for n in range(1030)]),
            headers={"content-type": "application/x-www-form-urlencoded"})
        assert fields.status_code == 400 and "1024 fields" in fields.text
        ok = client.post("/action", content=urlencode(
            base_fields + [("uid", str(n)) for n in range(1, 1001)]),
            headers={"content-type": "application/x-www-form-urlencoded"})
        assert ok.status_code == 303


# -- attachments and actions -------------------------------------------------------------
def test_an_attachment_downloads_as_an_octet_stream_attachment(server):
    body = ("--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--b\r\n"
            "Content-Type: text/html; name=\"evil.html\"\r\n"
            "Content-Disposition: attachment; filename=\"evil.html\"\r\n\r\n"
            "<script>alert(1)</script>\r\n--b--")
    deliver(server, ALICE[0], "with attachment", body, 'multipart/mixed; boundary="b"')
    with login(server) as client:
        uid = uid_of(client, "with attachment")
        page = client.get("/message", params={"folder": "INBOX", "uid": uid}).text
        link = re.search(r'href="(/message/part\?[^"]+)"', page).group(1).replace("&amp;", "&")
        answer = client.get(link)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-disposition"].startswith("attachment;")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.content.strip() == b"<script>alert(1)</script>"


def test_delete_moves_to_trash_flag_move_and_search(server):
    for subject in ("alpha report", "beta notes", "gamma memo"):
        deliver(server, ALICE[0], subject, f"body of {subject} with needle-{subject[:2]}")
    with login(server) as client:
        uids = {s: uid_of(client, s) for s in ("alpha report", "beta notes", "gamma memo")}
        token = csrf_of(client.get("/mail").text)
        answer = client.post("/action", data={"csrf": token, "folder": "INBOX", "op": "delete",
                                              "uid": str(uids["alpha report"])})
        assert answer.status_code == 303
        uid_of(client, "alpha report", "Trash")
        client.post("/action", data={"csrf": token, "folder": "INBOX", "op": "flag",
                                     "uid": str(uids["beta notes"])})
        page = client.get("/message", params={"folder": "INBOX", "uid": uids["beta notes"]})
        assert 'value="unflag"' in page.text
        client.post("/action", data={"csrf": token, "folder": "INBOX", "op": "move",
                                     "dest": "Archive", "uid": str(uids["gamma memo"])})
        uid_of(client, "gamma memo", "Archive")
        inbox = client.get("/mail", params={"folder": "INBOX"}).text
        assert ">gamma memo<" not in inbox and ">alpha report<" not in inbox
        found = client.get("/mail", params={"folder": "Archive", "q": "needle-ga",
                                            "in": "body"}).text
        assert ">gamma memo<" in found
        assert ">beta notes<" not in client.get(
            "/mail", params={"folder": "INBOX", "q": "needle-ga", "in": "body"}).text
        by_subject = client.get("/mail", params={"folder": "INBOX", "q": "BETA",
                                                 "in": "subject"}).text
        assert ">beta notes<" in by_subject
        by_from = client.get("/mail", params={"folder": "INBOX", "q": "carol",
                                              "in": "from"}).text
        assert ">beta notes<" in by_from


# -- TLS, throttling and the bound on sessions (a server of their own) -------------------
def test_over_https_the_cookie_is_secure_logins_are_throttled_and_sessions_bounded(
        tmp_path):
    from tests.support.certs import make_cert

    cert, key = make_cert(tmp_path / "certs")
    config = base_config(tmp_path / "var", servernames=["example.com"])
    config["authThrottle"] = {"maxFailures": 3, "window": "5 minutes",
                              "blockTime": "5 minutes"}
    config["webmail"] = {"enabled": True, "port": 0, "https.enabled": True,
                         "maxSessions": 2,
                         "tls": {"certificate": str(cert), "privateKey": str(key)}}
    srv = ServerProcess(tmp_path, config)
    srv.add_user(*ALICE)
    srv.start()
    try:
        url = f"https://127.0.0.1:{srv.port('webmail')}"
        trust = ssl.create_default_context(cafile=str(cert))
        sessions = []
        for _n in range(3):
            client = httpx.Client(base_url=url, verify=trust, timeout=30)
            page = client.get("/login")
            answer = client.post("/login", data={"csrf": csrf_of(page.text),
                                                 "username": ALICE[0],
                                                 "password": ALICE[1]})
            assert answer.status_code == 303
            header = answer.headers["set-cookie"]
            assert "; Secure" in header and "HttpOnly" in header
            sessions.append(client)
        # the third login pushed the longest idle session out
        assert sessions[0].get("/mail").status_code == 303
        assert [c.get("/mail").status_code for c in sessions[1:]] == [200, 200]
        with httpx.Client(base_url=url, verify=trust, timeout=30) as client:
            codes = []
            for _n in range(5):
                page = client.get("/login")
                codes.append(client.post("/login", data={
                    "csrf": csrf_of(page.text), "username": ALICE[0],
                    "password": "wrong"}).status_code)
            assert codes[:3] == [401, 401, 401] and codes[-1] == 429, codes
            page = client.get("/login")          # even the right password waits now
            assert client.post("/login", data={"csrf": csrf_of(page.text),
                                               "username": ALICE[0],
                                               "password": ALICE[1]}).status_code == 429
        for client in sessions:
            client.close()
    finally:
        srv.stop()


def test_a_sent_message_the_users_quota_cannot_keep_is_sent_and_the_user_told(tmp_path):
    config = base_config(tmp_path / "var", servernames=["example.com"])
    config["webmail"] = {"enabled": True, "port": 0}
    srv = ServerProcess(tmp_path, config)
    srv.add_user(*ALICE)
    srv.add_user(*BOB)
    srv.admin("users", "quota", ALICE[0], "200")
    srv.start()
    try:
        with login(srv) as client:
            form = client.get("/compose")
            answer = client.post("/send", data={"csrf": csrf_of(form.text), "to": BOB[0],
                                                "subject": "over quota copy",
                                                "body": "x" * 500})
            assert answer.status_code == 303, answer.text
            assert answer.headers["location"].endswith("done=sent-no-copy")
            wait_for(lambda: [m for m in pop3_messages(srv, *BOB)
                              if b"over quota copy" in m], what="the mail at bob")
            sent = client.get("/mail", params={"folder": "Sent"}).text
            assert "over quota copy" not in sent
    finally:
        srv.stop()


def test_a_search_reads_only_the_newest_messages_and_the_first_mib_of_each(tmp_path):
    config = base_config(tmp_path / "var", servernames=["example.com"])
    config["webmail"] = {"enabled": True, "port": 0, "maxSearchMessages": 3}
    srv = ServerProcess(tmp_path, config)
    srv.add_user(*ALICE)
    srv.start()
    try:
        for n in range(3):
            deliver(srv, ALICE[0], f"haystack {n}", f"needle-{n} early")
        deliver(srv, ALICE[0], "long one", "needle-early\r\n" + ("x" * 998 + "\r\n") * 1100
                + "needle-late")
        with login(srv) as client:
            uid_of(client, "long one")

            def found(q):
                page = client.get("/mail", params={"folder": "INBOX", "q": q, "in": "body"})
                return re.findall(r">((?:haystack \d)|(?:long one))<", page.text)
            assert found("needle-early") == ["long one"]
            assert found("needle-late") == []                 # past the first MiB
            assert found("needle-2") == ["haystack 2"]
            assert found("needle-0") == []                    # older than the newest 3
    finally:
        srv.stop()
