"""The IMAP server end to end: ``mailet-mta serve`` as its own process, mail sent over
SMTP, read and changed with clients we did not write (imaplib, curl, mbsync)."""

from __future__ import annotations

import imaplib
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from tests.support.certs import make_cert
from tests.support.server import ServerProcess, base_config, wait_for

PASSWORD = "correct horse battery"


def message(subject: str, body: str = "Hello there.\r\n", to: str = "x@example.com") -> bytes:
    return (f"From: carol@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n\r\n{body}").encode()


def send(srv, subject: str, body: str = "Hello there.\r\n") -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
        assert s.sendmail("carol@example.org", [srv.user],
                          message(subject, body, srv.user)) == {}


def imap(srv, listener: str = "imap") -> imaplib.IMAP4:
    return imaplib.IMAP4("127.0.0.1", srv.port(listener), timeout=10)


def logged_in(srv) -> imaplib.IMAP4:
    box = imap(srv)
    box.login(srv.user, PASSWORD)
    return box


def exists(srv) -> int:
    box = logged_in(srv)
    try:
        typ, data = box.select("INBOX")
        return int(data[0])
    finally:
        box.logout()


class Account:
    """One user of a shared server: its address and the server's ports."""

    def __init__(self, srv: ServerProcess, user: str):
        self.srv, self.user = srv, user

    def port(self, listener: str) -> int:
        return self.srv.port(listener)


def start_server(tmp_path, users=("alice@example.com",)) -> ServerProcess:
    cert, key = make_cert(tmp_path)
    tls = {"certificate": str(cert), "privateKey": str(key)}
    config = base_config(tmp_path / "var", imap=[
        {"name": "imap", "listen": "tcp:0:interface=127.0.0.1", "tls": tls},
        {"name": "imaps", "listen": "tcp:0:interface=127.0.0.1", "implicitTLS": True,
         "tls": tls},
        {"name": "imap-tls-only", "listen": "tcp:0:interface=127.0.0.1",
         "requireSSL": True, "tls": tls}])
    srv = ServerProcess(tmp_path, config)
    for user in users:
        srv.add_user(user, PASSWORD)
    return srv.start()


ACCOUNTS = [f"user{n}@example.com" for n in range(18)]   # one per test


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("imap"), ACCOUNTS)
    srv.unused = list(ACCOUNTS)
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server):
    """A user of its own on the shared server, so tests do not see each other's mail."""
    return Account(shared_server, shared_server.unused.pop())


@pytest.fixture
def own_server(tmp_path):
    """A server of its own (the throttle blocks the client address for every user)."""
    srv = start_server(tmp_path)
    yield Account(srv, "alice@example.com")
    srv.stop()


def _delivered(srv, count: int) -> None:
    wait_for(lambda: exists(srv) >= count, what=f"{count} messages in INBOX")


def test_login_select_fetch_with_imaplib(server):
    send(server, "first")
    _delivered(server, 1)
    box = logged_in(server)
    typ, data = box.select("INBOX")
    assert (typ, data) == ("OK", [b"1"])
    typ, data = box.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"Subject: first" in data[0][1]
    typ, data = box.fetch("1", "(RFC822)")
    raw = data[0][1]
    assert raw.endswith(b"Hello there.\r\n") and b"Return-Path: <carol@example.org>" in raw
    typ, data = box.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    send(server, "second", "needle in the body\r\n")
    _delivered(server, 2)
    box.noop()
    assert box.search(None, "UNSEEN") == ("OK", [b"2"])
    assert box.uid("SEARCH", "BODY", "needle") == ("OK", [b"2"])
    assert box.search(None, "SUBJECT", "first") == ("OK", [b"1"])
    box.logout()


def test_login_with_a_wrong_password_is_refused(server):
    box = imap(server)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        box.login(server.user, "wrong")


def test_special_use_folders_are_listed(server):
    box = logged_in(server)
    typ, data = box.list()
    text = b"\n".join(data)
    for name, attr in ((b"Sent", b"\\Sent"), (b"Trash", b"\\Trash"), (b"Junk", b"\\Junk"),
                       (b"Drafts", b"\\Drafts"), (b"Archive", b"\\Archive")):
        assert re.search(rb"\(.*" + re.escape(attr) + rb".*\) \"/\" \"?" + name, text), text
    box.logout()


def test_store_copy_move_expunge_and_uidplus(server):
    for i in range(3):
        send(server, f"msg {i}")
    _delivered(server, 3)
    box = logged_in(server)
    box.select("INBOX")
    typ, data = box.store("1", "+FLAGS", "(\\Flagged)")
    assert typ == "OK" and b"\\Flagged" in data[0]
    typ, data = box.copy("1:2", "Archive")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = box.uid("MOVE", "3", "Trash")
    assert typ == "OK"
    box.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = box.expunge()
    assert data[-1] == b"1"      # imaplib keeps MOVE's EXPUNGE (3) in the list too
    typ, data = box.select("Archive", readonly=True)
    assert data == [b"2"]
    typ, data = box.select("Trash")
    assert data == [b"1"]
    typ, data = box.status("INBOX", "(MESSAGES UIDNEXT)")
    assert b"MESSAGES 1" in data[0]
    box.logout()


def test_append_with_flags_and_appenduid(server):
    box = logged_in(server)
    msg = message("appended", "body of the appended message\r\n", server.user)
    typ, data = box.append("Drafts", "(\\Draft \\Seen)", None, msg)
    assert typ == "OK" and b"APPENDUID" in data[0]
    box.select("Drafts")
    typ, data = box.fetch("1", "(FLAGS BODY.PEEK[])")
    assert b"\\Draft" in data[0][0] and data[0][1] == msg
    typ, data = box.append("NoSuchFolder", None, None, msg)
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]")
    box.logout()


def test_folders_create_rename_delete(server):
    box = logged_in(server)
    assert box.create("Projects/2026")[0] == "OK"
    assert box.rename("Projects", "Work")[0] == "OK"
    typ, data = box.list('""', "Work/*")
    assert b"Work/2026" in data[0]
    assert box.delete("Work/2026")[0] == "OK"
    assert box.create("Work")[0] == "NO"
    box.logout()


def test_idle_pushes_a_mail_delivered_by_smtp(server):
    box = logged_in(server)
    box.select("INBOX")
    sock = box.socket()
    box.send(b"i1 IDLE\r\n")
    assert box.readline().startswith(b"+")
    send(server, "pushed")
    started = time.monotonic()          # the 250 is in
    sock.settimeout(10)
    line = box.readline()
    took = time.monotonic() - started
    print(f"IDLE push {took * 1000:.0f} ms after the 250")
    assert line == b"* 1 EXISTS\r\n", line
    assert took < 2.0
    box.send(b"DONE\r\n")
    while not (line := box.readline()).startswith(b"i1 "):
        pass
    assert line.startswith(b"i1 OK")
    box.logout()


def test_other_sessions_see_flag_changes_and_expunges_at_noop(server):
    send(server, "shared")
    send(server, "shared 2")
    _delivered(server, 2)
    a, b = logged_in(server), logged_in(server)
    a.select("INBOX")
    b.select("INBOX")
    a.store("1", "+FLAGS", "(\\Deleted)")
    a.expunge()
    typ, data = b.noop()
    assert b.untagged_responses.get("EXPUNGE") == [b"1"]
    a.logout()
    b.logout()


def test_pop3_and_imap_see_the_same_mailbox(server):
    send(server, "one")
    send(server, "two")
    _delivered(server, 2)
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    pop.user(server.user)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 2
    pop.dele(1)
    pop.quit()
    box = logged_in(server)
    typ, data = box.select("INBOX")
    assert data == [b"1"]
    typ, data = box.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: two" in data[0][1]
    box.store("1", "+FLAGS", "(\\Deleted)")
    box.expunge()
    box.logout()
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    pop.user(server.user)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 0
    pop.quit()


def test_starttls_then_login(server):
    box = imap(server)
    box.starttls(ssl_context=_insecure())
    assert box.login(server.user, PASSWORD)[0] == "OK"
    box.logout()


def test_implicit_tls(server):
    box = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=_insecure(),
                            timeout=10)
    assert box.login(server.user, PASSWORD)[0] == "OK"
    box.logout()


def test_require_ssl_says_logindisabled_until_starttls(server):
    box = imap(server, "imap-tls-only")
    assert "LOGINDISABLED" in box.capabilities
    typ, data = box._simple_command("LOGIN", server.user, PASSWORD)
    assert typ == "NO" and data[0].startswith(b"[PRIVACYREQUIRED]")
    box.starttls(ssl_context=_insecure())
    assert "LOGINDISABLED" not in box.capabilities
    assert box.login(server.user, PASSWORD)[0] == "OK"
    box.logout()


def test_failed_logins_are_throttled_like_pop3(own_server):
    server = own_server
    refused = None
    for attempt in range(12):
        box = imap(server)
        try:
            box.login(server.user, "wrong")
        except imaplib.IMAP4.error as exc:
            if "UNAVAILABLE" in str(exc):
                refused = attempt
                break
        except (imaplib.IMAP4.abort, OSError):
            refused = attempt
            break
        finally:
            try:
                box.shutdown()
            except OSError:
                pass
    assert refused is not None, "failed logins were never throttled"
    box = imap(server)
    with pytest.raises((imaplib.IMAP4.error, imaplib.IMAP4.abort)):
        box.login(server.user, PASSWORD)      # refused unchecked while the address is blocked


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reads_a_message_over_imap(server):
    send(server, "for curl")
    _delivered(server, 1)
    out = subprocess.run(["curl", "-s", "--max-time", "20", "--user", f"{server.user}:{PASSWORD}",
                          f"imap://127.0.0.1:{server.port('imap')}/INBOX;UID=1"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert b"Subject: for curl" in out.stdout


def test_unknown_command_and_oversized_line_keep_the_session(server):
    with socket.create_connection(("127.0.0.1", server.port("imap")), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        s.sendall(b"a FROB\r\n")
        assert f.readline() == b"a BAD unknown command FROB\r\n"
        s.sendall(b"b NOOP " + b"x" * 70_000 + b"\r\nc NOOP\r\n")
        assert f.readline().startswith(b"b BAD command line too long")
        assert f.readline() == b"c OK NOOP completed\r\n"


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) is not installed")
def test_mbsync_syncs_a_mailbox_both_ways(server, tmp_path):
    send(server, "to be synced")
    _delivered(server, 1)
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount test
Host 127.0.0.1
Port {server.port('imap')}
User {server.user}
Pass "{PASSWORD}"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account test

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Archive
Create Both
Expunge Both
SyncState *
""")

    def mbsync():
        out = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True,
                             timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr

    mbsync()
    pulled = list((maildir / "INBOX" / "new").iterdir()) + \
        list((maildir / "INBOX" / "cur").iterdir())
    assert len(pulled) == 1 and b"Subject: to be synced" in pulled[0].read_bytes()
    # Locally: file a new message into Archive and mark the pulled one seen and deleted.
    (maildir / "Archive" / "new").mkdir(parents=True, exist_ok=True)
    (maildir / "Archive" / "cur").mkdir(parents=True, exist_ok=True)
    (maildir / "Archive" / "tmp").mkdir(parents=True, exist_ok=True)
    (maildir / "Archive" / "new" / "1.local").write_bytes(
        message("filed locally", to=server.user))
    local = pulled[0]
    local.rename(maildir / "INBOX" / "cur" / (local.name.split(":")[0] + ":2,ST"))
    mbsync()
    box = logged_in(server)
    typ, data = box.select("Archive")
    assert data == [b"1"]
    typ, data = box.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"filed locally" in data[0][1]
    typ, data = box.select("INBOX")
    assert data == [b"0"]           # deleted locally, expunged on the server
    box.logout()


def test_getquotaroot_tells_the_quota_the_administrator_set(server):
    send(server, "counted")
    box = logged_in(server)
    deadline = time.monotonic() + 10
    while box.select("INBOX")[1] != [b"1"]:
        assert time.monotonic() < deadline, "the mail was not delivered"
        time.sleep(0.1)
    typ, data = box.getquotaroot("INBOX")
    assert typ == "OK" and data == [[b'"INBOX"'], [None]], data    # no quota: no root
    server.srv.admin("users", "quota", server.user, str(1024 * 1024))
    typ, data = box.getquotaroot("INBOX")
    assert typ == "OK" and data[0] == [b'"INBOX" ""'], data
    assert data[1] == [b'"" (STORAGE 1 1024)'], data
    box.logout()
