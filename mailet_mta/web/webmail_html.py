"""The web mail's pages, rendered on the server as plain HTML.

Every value from a message or a user goes through :func:`e` (``html.escape``); no page
holds inline script or style (the Content-Security-Policy forbids both): behaviour is
in ``/static/webmail.js``, looks in ``/static/webmail.css``. Markup is for keyboards
and screen readers first: a skip link, one ``h1`` per page, labels on every control,
tables with headers, buttons that are buttons.
"""

from __future__ import annotations

import html
import time
from urllib.parse import urlencode

from .webmail_message import ReadMessage


def e(value) -> str:
    """Text made safe for HTML content and quoted attributes."""
    return html.escape(str(value), quote=True)


def url(path: str, **query) -> str:
    """``path`` with its query (values None left out), escaped for an attribute."""
    kept = {k: v for k, v in query.items() if v is not None}
    return e(path + ("?" + urlencode(kept) if kept else ""))


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(token)}">'


def layout(title: str, body: str, user: str | None = None, csrf: str = "",
           folders: str = "", folder: str = "INBOX") -> str:
    """A whole page: head, the top bar of a logged-in user, the folders and ``body``."""
    bar = ""
    if user is not None:
        bar = f"""<header class="bar">
<a class="brand" href="/mail?folder=INBOX">Mail</a>
<form class="search" role="search" method="get" action="/mail">
<input type="hidden" name="folder" value="{e(folder)}">
<label for="q">Search {e(folder)}</label>
<input id="q" name="q" type="search" maxlength="200" accesskey="s">
<label for="in">in</label>
<select id="in" name="in"><option value="all">subject, sender and text</option>
<option value="subject">subject</option><option value="from">sender</option>
<option value="body">text</option></select>
<button type="submit">Search</button></form>
<a class="button" href="/compose" accesskey="n">Write</a>
<span class="user">{e(user)}</span>
<form method="post" action="/logout">{csrf_field(csrf)}<button type="submit">Log out</button></form>
</header>"""
    nav = f'<nav aria-label="Folders">{folders}</nav>' if folders else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<link rel="stylesheet" href="/static/webmail.css">
<script src="/static/webmail.js" defer></script>
</head><body>
<a class="skip" href="#main">Skip to content</a>
{bar}<div class="frame">{nav}<main id="main" tabindex="-1">
{body}
</main></div></body></html>"""


def login_page(token: str, error: str = "", user: str = "") -> str:
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    return layout("Log in", f"""<h1>Log in</h1>{alert}
<form method="post" action="/login" class="login">
<input type="hidden" name="csrf" value="{e(token)}">
<p><label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required maxlength="320"
 value="{e(user)}" autofocus></p>
<p><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
 required maxlength="1024"></p>
<p><button type="submit">Log in</button></p></form>""")


def error_page(status: int, title: str, detail: str, user: str | None = None,
               csrf: str = "") -> str:
    return layout(title, f"""<h1>{e(title)}</h1><p role="alert">{e(detail)}</p>
<p><a href="/mail?folder=INBOX">Back to the inbox</a></p>""", user, csrf)


def folder_nav(folders, current: str) -> str:
    """``folders``: (name, unread) pairs."""
    items = []
    for name, unread in folders:
        label = e(name) + (f' <span class="unread">({unread}<span class="sr"> unread'
                           f'</span>)</span>' if unread else "")
        current_attr = ' aria-current="page"' if name == current else ""
        items.append(f'<li><a href="{url("/mail", folder=name)}"{current_attr}>'
                     f'{label}</a></li>')
    return "<h2 class=\"sr\">Folders</h2><ul>" + "".join(items) + "</ul>"


def _when(date: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(date))


def move_select(folders, current: str, ident: str) -> str:
    options = "".join(f'<option value="{e(n)}">{e(n)}</option>'
                      for n, _u in folders if n != current)
    return (f'<label for="{ident}">Move to</label> <select id="{ident}" name="dest">'
            f'{options}</select>')


def message_list(folder: str, rows, page: int, pages: int, total: int, csrf: str,
                 folders, query: str = "", where: str = "all", notice: str = "") -> str:
    """``rows``: (uid, summary dict, flags, size, date)."""
    heading = (f"Search for “{e(query)}” in {e(folder)}" if query else e(folder))
    lines = []
    for uid, info, flags, size, date in rows:
        unread = "\\Seen" not in flags
        flagged = "\\Flagged" in flags
        cls = ' class="unread"' if unread else ""
        status = ("unread" if unread else "read") + (", flagged" if flagged else "")
        lines.append(
            f'<tr{cls}><td><input type="checkbox" name="uid" value="{uid}" '
            f'id="m{uid}" aria-label="Select {e(info["subject"] or "(no subject)")}"></td>'
            f'<td>{"★" if flagged else ""}<span class="sr">{status}</span></td>'
            f'<td>{e(info["from"])}</td>'
            f'<td><a href="{url("/message", folder=folder, uid=uid)}">'
            f'{e(info["subject"] or "(no subject)")}</a></td>'
            f'<td><time>{_when(date)}</time></td><td>{size // 1024 + 1} KB</td></tr>')
    table = ("<p>No messages.</p>" if not lines else
             '<table class="messages"><caption class="sr">Messages, newest first'
             '</caption><thead><tr><th scope="col"><input type="checkbox" '
             'class="select-all" aria-label="Select all"></th><th scope="col">'
             '<span class="sr">Status</span></th><th scope="col">From</th>'
             '<th scope="col">Subject</th><th scope="col">Date</th>'
             '<th scope="col">Size</th></tr></thead><tbody>' + "".join(lines)
             + "</tbody></table>")
    pager = []
    search = {"q": query or None, "in": where if query else None}
    if page > 1:
        newer = url("/mail", folder=folder, page=page - 1, **search)
        pager.append(f'<a rel="prev" href="{newer}">Newer</a>')
    pager.append(f"<span>Page {page} of {max(pages, 1)} ({total} messages)</span>")
    if page < pages:
        older = url("/mail", folder=folder, page=page + 1, **search)
        pager.append(f'<a rel="next" href="{older}">Older</a>')
    note = f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    return f"""<h1>{heading}</h1>{note}
<form method="post" action="/action" class="actions">{csrf_field(csrf)}
<input type="hidden" name="folder" value="{e(folder)}">
<div class="toolbar">
<button type="submit" name="op" value="delete" class="delete">Delete</button>
<button type="submit" name="op" value="seen">Mark read</button>
<button type="submit" name="op" value="unseen">Mark unread</button>
<button type="submit" name="op" value="flag">Flag</button>
<button type="submit" name="op" value="unflag">Unflag</button>
{move_select(folders, folder, "dest-top")}
<button type="submit" name="op" value="move">Move</button></div>
{table}</form>
<nav class="pager" aria-label="Pages">{" ".join(pager)}</nav>"""


def message_page(folder: str, uid: int, msg: ReadMessage, flags, csrf: str, folders,
                 show_images: bool) -> str:
    def row(label, value):
        return f"<dt>{label}</dt><dd>{e(value)}</dd>" if value else ""

    heads = (row("From", msg.sender) + row("To", msg.to) + row("Cc", msg.cc)
             + row("Date", msg.date))
    body = ""
    if msg.html is not None:
        images = ""
        if msg.remote_images and not show_images:
            images = (f'<p class="notice">Remote images are not shown. <a href="'
                      f'{url("/message", folder=folder, uid=uid, images="true")}">Show images'
                      f'</a></p>')
        body = (f'{images}<iframe class="html-body" title="Message text" sandbox='
                f'"allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer"'
                f' srcdoc="{e(msg.html)}"></iframe>')
        if msg.text is not None:
            body += f'<details><summary>Plain text</summary><pre>{e(msg.text)}</pre></details>'
    elif msg.text is not None:
        body = f'<pre class="text-body">{e(msg.text)}</pre>'
    files = ""
    if msg.attachments:
        items = "".join(
            f'<li><a href="{url("/message/part", folder=folder, uid=uid, part=a.index)}" '
            f'download>{e(a.filename)}</a> ({e(a.content_type)}, {a.size} octets)</li>'
            for a in msg.attachments)
        files = f'<h2>Attachments</h2><ul class="attachments">{items}</ul>'
    flagged = "\\Flagged" in flags
    flag_op, flag_label = ("unflag", "Unflag") if flagged else ("flag", "Flag")
    return f"""<h1>{e(msg.subject or "(no subject)")}</h1>
<dl class="headers">{heads}</dl>
<div class="toolbar">
<a class="button" href="{url("/compose", mode="reply", folder=folder, uid=uid)}">Reply</a>
<a class="button" href="{url("/compose", mode="all", folder=folder, uid=uid)}">Reply all</a>
<a class="button" href="{url("/compose", mode="forward", folder=folder, uid=uid)}">Forward</a>
<form method="post" action="/action">{csrf_field(csrf)}
<input type="hidden" name="folder" value="{e(folder)}">
<input type="hidden" name="uid" value="{uid}">
<button type="submit" name="op" value="{flag_op}">{flag_label}</button>
<button type="submit" name="op" value="delete" class="delete">Delete</button>
{move_select(folders, folder, "dest-msg")}
<button type="submit" name="op" value="move">Move</button></form></div>
<section aria-label="Message text">{body}</section>{files}"""


def compose_page(csrf: str, max_size: int, to: str = "", cc: str = "", subject: str = "",
                 body: str = "", reply_folder: str = "", reply_uid: int | None = None,
                 mode: str = "new", error: str = "") -> str:
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    ref = ""
    if reply_uid is not None:
        ref = (f'<input type="hidden" name="ref_folder" value="{e(reply_folder)}">'
               f'<input type="hidden" name="ref_uid" value="{reply_uid}">'
               f'<input type="hidden" name="mode" value="{e(mode)}">')
    note = (" The original message is attached." if mode == "forward" else "")
    return f"""<h1>Write a message</h1>{alert}
<form method="post" action="/send" enctype="multipart/form-data" class="compose">
{csrf_field(csrf)}{ref}
<p><label for="to">To</label><input id="to" name="to" value="{e(to)}" maxlength="8000"></p>
<p><label for="cc">Cc</label><input id="cc" name="cc" value="{e(cc)}" maxlength="8000"></p>
<p><label for="bcc">Bcc</label><input id="bcc" name="bcc" maxlength="8000"></p>
<p><label for="subject">Subject</label><input id="subject" name="subject"
 value="{e(subject)}" maxlength="998"></p>
<p><label for="body">Text</label><textarea id="body" name="body" rows="18">{e(body)}</textarea></p>
<p><label for="files">Attachments</label><input id="files" name="files" type="file" multiple
 aria-describedby="files-note"> <span id="files-note">At most {max_size // (1024 * 1024)} MB
 in all.{note}</span></p>
<p><button type="submit">Send</button></p></form>"""
