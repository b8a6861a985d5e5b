"""The web mail in a real browser: Debian's Chromium driven by Playwright for Python.

Log in, read a mail delivered over SMTP, reply to it (the reply arrives in another
user's POP3 mailbox), and open a hostile HTML mail that tries every usual way to run
script: none runs (``window.__pwned`` stays undefined, no dialog opens). Screenshots of
the main pages go to ``test-artifacts/webmail/`` (git-ignored).

Skipped when Chromium or Playwright is missing, unless MAILET_MTA_REQUIRE_BROWSER=1
(as in CI), which makes their absence a failure. Playwright's own browser download is
not used: the system Chromium is launched by path.
"""

from __future__ import annotations

import os
import shutil
import smtplib
from pathlib import Path

import pytest

from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "webmail"
CHROMIUM = os.environ.get("MAILET_MTA_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"
ALICE = ("alice@example.com", "alice-browser-1")
BOB = ("bob@example.com", "bob-browser-2")
HOSTILE = (
    '<p>Hello from a stranger</p>'
    '<script>window.__pwned = 1; window.top.__pwned = 1; alert("script")</script>'
    '<img src="x" onerror="window.top.__pwned = 2; alert(\'onerror\')">'
    '<svg onload="window.top.__pwned = 3"></svg>'
    '<body onload="window.top.__pwned = 4">'
    '<a href="javascript:window.top.__pwned = 5">click me</a>'
    '<iframe srcdoc="<script>parent.parent.__pwned = 6</script>"></iframe>'
    '<object data="javascript:window.top.__pwned = 7"></object>'
    '<form action="javascript:window.top.__pwned = 8"><button>go</button></form>'
    '<meta http-equiv="refresh" content="0;url=javascript:window.top.__pwned = 9">'
    '<img src="https://tracker.invalid/pixel.gif">')


def _browser_or_skip():
    required = os.environ.get("MAILET_MTA_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            pytest.fail("MAILET_MTA_REQUIRE_BROWSER=1 but playwright is not installed "
                        "(pip install -e '.[test]')")
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"MAILET_MTA_REQUIRE_BROWSER=1 but there is no Chromium at "
                        f"{CHROMIUM} (apt-get install -y chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium); set "
                    f"MAILET_MTA_REQUIRE_BROWSER=1 to make this a failure")
    return sync_playwright


@pytest.fixture(scope="module")
def sync_playwright():
    """Playwright's entry point, once Chromium and Playwright are known to be here."""
    return _browser_or_skip()


@pytest.fixture(scope="module")
def server(sync_playwright, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webmail-browser")
    config = base_config(tmp / "var", servernames=["example.com"])
    config["webmail"] = {"enabled": True, "port": 0}
    srv = ServerProcess(tmp, config)
    srv.add_user(*ALICE)
    srv.add_user(*BOB)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture()
def page(server, sync_playwright):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1200, "height": 800})
        page = context.new_page()
        page.dialogs = []
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        page.set_default_timeout(20_000)
        page.base = f"http://127.0.0.1:{server.port('webmail')}"
        try:
            yield page
        finally:
            context.close()
            browser.close()


def deliver(server, rcpt: str, subject: str, body: str, kind: str = "text/plain") -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail("carol@remote.test", [rcpt],
                        f"From: Carol <carol@remote.test>\r\nTo: {rcpt}\r\n"
                        f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
                        f"Content-Type: {kind}; charset=utf-8\r\n\r\n{body}\r\n".encode())


def log_in(page, user=ALICE) -> None:
    page.goto(page.base + "/")
    page.get_by_label("User name").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.screenshot(path=str(ARTIFACTS / "login.png"))
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="INBOX", level=1).wait_for()


def open_mail(page, subject: str) -> None:
    def listed():
        page.goto(page.base + "/mail?folder=INBOX")
        return page.get_by_role("link", name=subject).count() > 0
    wait_for(listed, interval=0.3, what=f"{subject!r} in the inbox")
    page.get_by_role("link", name=subject).click()
    page.get_by_role("heading", name=subject, level=1).wait_for()


def test_log_in_read_a_mail_from_smtp_and_reply_to_bobs_pop3_mailbox(server, page):
    deliver(server, ALICE[0], "Lunch on Friday?", "Shall we meet at noon?")
    log_in(page)
    page.keyboard.press("Tab")                        # keyboard users skip the bar
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("/")                          # the static script runs under CSP
    assert page.evaluate("document.activeElement.id") == "q"
    open_mail(page, "Lunch on Friday?")
    assert "Shall we meet at noon?" in page.inner_text("main")
    page.screenshot(path=str(ARTIFACTS / "message.png"))
    page.get_by_role("link", name="Reply", exact=True).click()
    page.get_by_role("heading", name="Write a message").wait_for()
    assert page.get_by_label("To").input_value() == "Carol <carol@remote.test>"
    page.get_by_label("To").fill(BOB[0])
    page.get_by_label("Text").fill("Noon works for me.\n")
    page.screenshot(path=str(ARTIFACTS / "compose.png"))
    page.get_by_role("button", name="Send").click()
    page.get_by_text("Your message was sent").wait_for()
    page.screenshot(path=str(ARTIFACTS / "inbox.png"))
    raw = wait_for(lambda: [m for m in pop3_messages(server, *BOB)
                            if b"Noon works for me." in m], what="the reply at bob")[0]
    assert b"Subject: Re: Lunch on Friday?" in raw and b"From: alice@example.com" in raw
    page.get_by_label("Search INBOX").fill("friday")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Search for “friday” in INBOX").wait_for()
    assert page.get_by_role("link", name="Lunch on Friday?").count() == 1
    page.get_by_role("link", name="Sent").click()
    page.get_by_role("link", name="Re: Lunch on Friday?").wait_for()
    assert page.dialogs == []


def test_a_hostile_html_mail_runs_no_script(server, page):
    deliver(server, ALICE[0], "Totally harmless", HOSTILE, "text/html")
    log_in(page)
    open_mail(page, "Totally harmless")
    frame = page.frame_locator("iframe.html-body")
    frame.get_by_text("Hello from a stranger").wait_for()
    frame.get_by_text("click me").click()             # a javascript: link does nothing
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert len(page.frames) == 2                      # the page and the mail, no more
    for child in page.frames:
        assert child.evaluate("typeof window.__pwned") == "undefined", child.url
    assert page.dialogs == []
    assert page.get_by_text("Remote images are not shown").count() == 1
    page.screenshot(path=str(ARTIFACTS / "hostile.png"))
