"""The web mail's parts without a server: its section, sessions, forms, HTML, MIME."""

from __future__ import annotations

import email
import email.policy

import pytest
import pytest_twisted
import sqlalchemy as sa

from mailet_mta.api import ConfigurationError
from mailet_mta.config import load_config_text
from mailet_mta.config.webmail import webmail_config
from mailet_mta.storage import schema
from mailet_mta.web import webmail_message as M
from mailet_mta.web.webmail import MAX_FIELDS, read_form
from mailet_mta.web.webmail_html import e, login_page
from mailet_mta.web.webmail_sessions import Session, SessionStore

HEAD = "servernames: [example.com]\n"


def webmail(text: str):
    return webmail_config(load_config_text(HEAD + text, "yaml"))


# -- the section -------------------------------------------------------------------------
def test_webmail_is_off_and_on_loopback_by_default():
    cfg = webmail("")
    assert not cfg.enabled and cfg.endpoint == "tcp:8081:interface=127.0.0.1"
    assert cfg.session_idle_timeout == 1800 and cfg.max_sessions == 10_000


def test_webmail_keys_are_read():
    cfg = webmail("webmail: {enabled: true, port: 0, maxBodySize: 5m, pageSize: 20, "
                  "sessionIdleTimeout: 10 minutes, maxSessions: 3, submission: sub}\n")
    assert cfg.enabled and cfg.max_body_size == 5 * 1024 * 1024 and cfg.max_page_size == 20
    assert cfg.session_idle_timeout == 600 and cfg.max_sessions == 3
    assert cfg.submission == "sub"


@pytest.mark.parametrize("text, message", [
    ("webmail: {enabled: true, https.enabled: true}", "webmail.https.enabled needs a tls"),
    ("webmail: {pageSize: 501}", "500 or less"),
    ("webmail: {sessionIdleTimeout: 5s}", "at least 60 seconds"),
    ("webmail: {maxSessions: 0}", "webmail.maxSessions"),
    ("webmail: {maxSearchMessages: 1000000}", "100000 or less"),
    ("webmail: {maxBodySize: 10}", "at least 1k"),
    ("webmail: {tls: {certificate: a, privateKey: b, startTLS: true}}",
     "no meaning for the web mail"),
])
def test_webmail_mistakes_are_one_line_errors(text, message):
    with pytest.raises(ConfigurationError, match=message):
        webmail(text + "\n")


def test_the_xml_file_takes_the_webmail_section():
    xml = ("<config><servernames><servername>example.com</servername></servernames>"
           "<webmail><enabled>true</enabled><port>0</port><pageSize>25</pageSize>"
           "</webmail></config>")
    cfg = webmail_config(load_config_text(xml, "xml"))
    assert cfg.enabled and cfg.max_page_size == 25 and cfg.endpoint == "tcp:0:interface=127.0.0.1"


# -- sessions (in the database: two Database objects stand for two processes) ----------
class Clock:
    now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest_twisted.ensureDeferred
async def test_sessions_are_random_256_bit_ids_shared_by_processes_and_expire_when_idle(
        two_processes_db):
    clock = Clock()
    one, other = (SessionStore(db, idle_timeout=600, max_sessions=10, clock=clock)
                  for db in two_processes_db)
    a, b = await one.create("a@x"), await one.create("b@x")
    assert a.id != b.id and len(a.id) >= 43 and a.csrf not in (a.id, b.csrf)
    assert a.id not in repr(a) and a.csrf not in repr(a)
    found = await other.get(a.id)                # made by one, served by the other
    assert found.user == "a@x" and found.csrf == a.csrf and found.csrf_ok(a.csrf)
    with two_processes_db[0].transaction() as conn:  # only the id's hash is stored
        stored = [tuple(r) for r in conn.execute(sa.select(schema.webmail_sessions))]
    assert all(a.id not in map(str, row) and a.csrf not in map(str, row) for row in stored)
    clock.now += 599
    assert (await other.get(a.id)).user == "a@x"  # touched: idle time restarts
    clock.now += 599
    assert await one.get(a.id) is not None and await one.get(b.id) is None
    assert await one.get("x" * 65) is None and await one.get(None) is None
    await other.end(a.id)                         # logout in one ends it in both
    assert await one.get(a.id) is None and await one.count() == 1
    clock.now += 10_000
    assert await other.expire() == 1 and await one.count() == 0


@pytest_twisted.ensureDeferred
async def test_the_number_of_sessions_is_bounded_and_the_longest_idle_goes_first(
        two_processes_db):
    clock = Clock()
    store = SessionStore(two_processes_db[0], idle_timeout=600, max_sessions=3, clock=clock)
    first = await store.create("1@x")
    others = []
    for n in range(2, 4):
        clock.now += 1
        others.append(await store.create(f"{n}@x"))
    clock.now += 100
    await store.get(first.id)                    # the first one is used again
    fourth = await store.create("4@x")
    assert await store.count() == 3
    assert await store.get(others[0].id) is None
    assert (await store.get(first.id)).user == "1@x"
    assert (await store.get(fourth.id)).user == "4@x"


def test_csrf_tokens_compare_exactly():
    s = Session("an-id", "u@x")
    assert s.csrf_ok(s.csrf) and s.csrf == Session("an-id", "v@x").csrf
    assert not s.csrf_ok(None) and not s.csrf_ok("") and not s.csrf_ok(s.csrf + "x")
    assert not s.csrf_ok(Session("another-id", "u@x").csrf)


# -- forms -------------------------------------------------------------------------------
def multipart(parts, boundary="XyZ") -> tuple[bytes, str]:
    body = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_multipart_forms_give_fields_and_files_with_their_names():
    body, kind = multipart([("csrf", None, b"tok"), ("files", "../../etc/résumé.pdf", b"%PDF"),
                            ("files", "", b"")])
    form = read_form(body, kind, max_files=5)
    assert form.get("csrf") == "tok"
    assert [(f[0], f[1], f[3]) for f in form.files] == [("files", "résumé.pdf", b"%PDF")]


def test_forms_are_bounded_in_fields_and_files():
    body, kind = multipart([("files", f"{n}.txt", b"x") for n in range(3)])
    with pytest.raises(ValueError, match="at most 2 attachments"):
        read_form(body, kind, max_files=2)
    many = "&".join(f"f{n}=1" for n in range(MAX_FIELDS + 1)).encode()
    with pytest.raises(ValueError, match="at most"):
        read_form(many, "application/x-www-form-urlencoded", max_files=2)
    with pytest.raises(ValueError, match="multipart/form-data or urlencoded"):
        read_form(b"{}", "application/json", max_files=2)


# -- HTML and MIME -----------------------------------------------------------------------
HOSTILE = ('<div onmouseover="x()">hi<script>alert(1)</script><img src="http://t.example/a">'
           '<img src="data:image/png;base64,iVBORw0KGgo=" onerror="x()">'
           '<a href="javascript:alert(1)" target="_top">j</a><a href="https://ok.example/">ok'
           '</a><iframe src="/"></iframe><form><input></form><object></object><embed>'
           '<style>*{}</style><meta http-equiv="refresh" content="0;url=/logout">'
           '<base href="https://evil.example/"><svg><script>alert(2)</script></svg></div>')


def test_sanitised_html_keeps_text_and_links_and_drops_everything_active():
    clean, held = M.sanitise(HOSTILE, show_images=False)
    low = clean.lower()
    for bad in ("script", "onmouseover", "onerror", "javascript:", "iframe", "<form",
                "<input", "object", "embed", "<style", "<meta", "<base", "t.example"):
        assert bad not in low, bad
    assert held and "hi" in clean and 'href="https://ok.example/"' in clean
    assert 'rel="noopener noreferrer"' in clean and "data:image/png" in clean
    assert 'target="_blank"' in clean and "_top" not in clean
    shown, _ = M.sanitise(HOSTILE, show_images=True)
    assert 'src="http://t.example/a"' in shown and "onerror" not in shown


def test_reading_a_message_finds_text_html_and_attachments():
    raw = (b"From: =?utf-8?q?Caf=C3=A9?= <c@x>\r\nSubject: =?utf-8?b?w6nDqQ==?=\r\n"
           b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
           b"Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n"
           b"Content-Type: text/plain\r\n\r\nplain\r\n--i\r\nContent-Type: text/html\r\n\r\n"
           b"<p onclick=x>rich</p>\r\n--i--\r\n--o\r\nContent-Type: image/png\r\n"
           b"Content-Disposition: attachment; filename=a.png\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--o--\r\n")
    msg = M.read(raw)
    assert msg.subject == "éé" and msg.sender == "Café <c@x>"
    assert msg.text.strip() == "plain" and msg.html.strip() == "<p>rich</p>"
    assert [(a.filename, a.content_type, a.size) for a in msg.attachments] == [
        ("a.png", "image/png", 5)]
    assert M.attachment(raw, msg.attachments[0].index) == ("a.png", b"hello")
    assert M.attachment(raw, 0) is None
    assert M.matches(raw, "RICH", "body") and not M.matches(raw, "rich", "subject")
    assert M.matches(raw, "café", "from")


def test_a_built_message_has_crlf_lines_no_header_injection_and_its_attachments():
    draft = M.Draft("a@example.com", ["b@example.com"], [], "hi there", "line 1\nline 2",
                    attachments=[("n.txt", "text/plain", b"n")], domain="example.com")
    data = M.build(draft)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "hi there" and msg["Message-ID"].endswith("@example.com>")
    assert [p.get_filename() for p in msg.iter_attachments()] == ["n.txt"]
    with pytest.raises(ValueError):
        M.addresses("a@x, b@x\r\nBcc: c@x, <d>")
    with pytest.raises(ValueError, match="at most 2"):
        M.addresses("a@x, b@x, c@x", limit=2)


def test_pages_escape_what_they_show():
    assert e('<script>"&') == "&lt;script&gt;&quot;&amp;"
    page = login_page('"><script>', error="<b>", user="<i>")
    assert "<script>" not in page.replace('<script src="/static/webmail.js" defer></script>',
                                          "")
    assert "&lt;b&gt;" in page and "&lt;i&gt;" in page
