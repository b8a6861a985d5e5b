"""The ``webmail`` listener: the users' mail on the web, on ``twisted.web``.

Off unless ``webmail.enabled``; loopback unless configured otherwise; TLS with the
section's ``tls`` block like the admin API (:class:`.listener.HTTPListenerService`).
Routing reuses the admin API's table (:class:`.http.Router`): a route declares its
method, path and query parameters with their bounds; this router adds what a browser
needs instead of bearer tokens and JSON — the session cookie, forms (parsed on a
worker thread, never by ``twisted.web`` on the reactor), the CSRF token of every POST,
HTML error pages and the security headers of every answer.

Users log in with their mail account through the store's ``check_login``: the
authenticator and per-address throttle POP3 and SMTP AUTH use. Mail is read through
the IMAP mail store (:class:`~mailet_mta.mailstore.IMailStore`): the same folders,
UIDs and flags as IMAP clients see. Sending goes through the server's own submission
listener on loopback, logged in for the user with the web mail's internal credential
(:mod:`.webmail_send`, :mod:`mailet_mta.webmail_credential`); the password typed at
login is checked and forgotten.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import parse_qs

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config.webmail import webmail_config
from ..retrieval import DatabaseMailStore
from . import webmail_html as H
from .host_check import host_check
from .http import HTTPError, Response, Route, Router
from .listener import HTTPListenerService
from .webmail_sessions import Session, SessionStore

log = Logger(namespace="mailet_mta.webmail")

COOKIE = "mailet_session"
LOGIN_COOKIE = "mailet_login"       # double-submit token of the login form
MAX_FIELDS = 1024                   # form fields of one request (a page of 500 selected)
HTML = "text/html; charset=utf-8"
# Every page: no inline script or style, nothing framed from elsewhere, no referrer.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'")
CSP_IMAGES = CSP.replace("img-src 'self' data:", "img-src 'self' data: https: http:")
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "Cross-Origin-Opener-Policy": "same-origin",
                    "Permissions-Policy": "camera=(), microphone=(), geolocation=()"}


@dataclass
class Form:
    """A POSTed form: text ``fields`` (name → values) and uploaded ``files``
    (field name, file name, content type, bytes)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[tuple[str, str, str, bytes]] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[-1] if values else default


@dataclass
class WebCall:
    """One request as a page handler sees it."""

    request: object
    params: dict
    form: Form | None
    session: Session | None


def read_form(body: bytes, content_type: str, max_files: int) -> Form:
    """Parse an ``application/x-www-form-urlencoded`` or ``multipart/form-data`` body
    (on a worker thread); ValueError past ``MAX_FIELDS`` fields or ``max_files``
    files, or for another content type."""
    kind = content_type.split(";")[0].strip().lower()
    form = Form()
    if kind == "application/x-www-form-urlencoded":
        try:
            form.fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True,
                                   max_num_fields=MAX_FIELDS)
        except ValueError:
            raise ValueError(f"a form has at most {MAX_FIELDS} fields") from None
        return form
    if kind != "multipart/form-data":
        raise ValueError(f"a form is sent as multipart/form-data or urlencoded, not {kind}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1",
                                                                            "replace")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise ValueError("the multipart form has no parts")
    for count, part in enumerate(msg.iter_parts()):
        if count >= MAX_FIELDS + max_files:
            raise ValueError(f"a form has at most {MAX_FIELDS} fields")
        name = part.get_param("name", header="content-disposition") or ""
        filename = part.get_filename()
        data = part.get_payload(decode=True) or b""
        if filename is not None:
            if not filename and not data:
                continue            # an empty file input
            if len(form.files) >= max_files:
                raise ValueError(f"at most {max_files} attachments")
            form.files.append((str(name), filename.replace("\\", "/").rsplit("/", 1)[-1],
                               part.get_content_type(), data))
        else:
            form.fields.setdefault(str(name), []).append(data.decode("utf-8", "replace"))
    return form


class WebmailRouter(Router):
    """The route table served with sessions, forms, CSRF checks and HTML errors."""

    def __init__(self, routes, sessions: SessionStore, secure: bool, max_body: int,
                 max_files: int, hosts=None):
        super().__init__(routes, None, max_body, hosts)
        self.sessions = sessions
        self.secure = secure
        self.max_files = max_files

    def session_of(self, request) -> defer.Deferred:
        """The request's session (→ :class:`Session` or None), looked up once; an error
        page shows it too."""
        raw = request.getCookie(COOKIE.encode())
        d = self.sessions.get(raw.decode("ascii", "replace") if raw else None)

        def keep(session):
            request.webmail_session = session
            return session
        return d.addCallback(keep)

    @defer.inlineCallbacks
    def _serve(self, request):
        session = yield self.session_of(request)    # first: a 404 page shows it too
        route, params = self._route(request)
        if session is None and not route.public:
            raise HTTPError(303, "Log in", "log in first", {"Location": "/login"})
        params.update(self._query(request, route))
        form = None
        if request.method == b"POST":
            form = yield self._form(request)
            if route.path != "/login" and (session is None
                                           or not session.csrf_ok(form.get("csrf"))):
                raise HTTPError(403, "Refused", "the form is stale or from another site "
                                "(its CSRF token does not match); reload the page")
        request.webadmin_call = None
        result = yield defer.maybeDeferred(route.handler, WebCall(request, params, form,
                                                                 session))
        return result

    def _form(self, request) -> defer.Deferred:
        if getattr(request, "body_too_large", False):
            raise HTTPError(413, "Too large", f"the request is larger than "
                            f"{self.max_body} octets")
        body = request.content.read(self.max_body + 1) if request.content else b""
        kind = request.getHeader("content-type") or "application/x-www-form-urlencoded"
        d = threads.deferToThread(read_form, body, kind, self.max_files)

        def bad(failure):
            failure.trap(ValueError)
            raise HTTPError(400, "Bad form", str(failure.value))
        return d.addErrback(bad)

    def _error(self, failure: Failure, request) -> Response:
        exc = failure.value
        if isinstance(exc, HTTPError):
            if exc.status in (302, 303):
                return Response(exc.status, raw=b"", content_type=HTML, headers=exc.headers)
            session = getattr(request, "webmail_session", None)
            page = H.error_page(exc.status, exc.title, exc.detail,
                                session.user if session else None,
                                session.csrf if session else "")
            return Response(exc.status, raw=page.encode(), content_type=HTML,
                            headers=exc.headers)
        log.failure("webmail: {method} {path} failed", failure,
                    method=request.method.decode("latin-1"),
                    path=request.path.decode("latin-1"))
        page = H.error_page(500, "Something went wrong", "the server could not complete "
                            "the request; its log says why")
        return Response(500, raw=page.encode(), content_type=HTML)

    def _write(self, answer: Response, request) -> None:
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": CSP, **answer.headers}
        answer.headers = headers
        super()._write(answer, request)

    # -- cookies -------------------------------------------------------------------------
    def set_cookie(self, request, name: str, value: str, max_age: int | None = None) -> None:
        """An HttpOnly, SameSite=Strict cookie for the whole site (Secure over TLS)."""
        request.addCookie(name.encode(), value.encode(), path=b"/", httpOnly=True,
                          secure=self.secure, sameSite="strict",
                          max_age=None if max_age is None else str(max_age).encode())


def html_answer(page: str, status: int = 200, headers: dict | None = None) -> Response:
    return Response(status, raw=page.encode("utf-8"), content_type=HTML,
                    headers=headers or {})


def redirect(location: str) -> Response:
    return Response(303, raw=b"", content_type=HTML, headers={"Location": location})


class WebmailService(HTTPListenerService):
    """Serves the web mail of ``server`` on the configured endpoint."""

    name = "webmail"
    parse_forms = False           # forms are parsed on a worker thread, not by twisted.web

    def __init__(self, server, config, reactor=None):
        super().__init__(config, reactor)
        from .webmail_pages import WebmailPages

        self.server = server
        self.sessions = SessionStore(server.db, config.session_idle_timeout,
                                     config.max_sessions)
        # How the web mail logs in to the submission listener for a user (it keeps no
        # user's password): see mailet_mta.webmail_credential.
        self.credential = server.webmail_credential
        submission = self._submission()
        limit = submission.config.max_message_size or config.max_body_size
        self.store = DatabaseMailStore(server.db, server.blobs, server.authenticator,
                                       server.node_name, max_message_size=limit)
        self.static = {name: resources.files("mailet_mta.web").joinpath(
            "static", name).read_bytes() for name in ("webmail.js", "webmail.css")}
        self.pages = WebmailPages(self, submission, limit)
        self.root = self.router = WebmailRouter(
            self.pages.routes() + [Route("GET", "/static/{name}", self.serve_static,
                                         "static", "static", {200: ("file", None)},
                                         path_params=[_static_param()], public=True)],
            self.sessions, self.tls_context is not None, config.max_body_size,
            config.max_attachments, host_check(config, server.config))

    def _submission(self):
        """The SMTP listener the users' mail is sent through."""
        smtp = [svc for _n, kind, svc in self.server.listeners if kind == "smtp"]
        wanted = self.config.submission
        if wanted:
            chosen = [svc for svc in smtp if svc.config.name == wanted]
            if not chosen:
                from ..api import ConfigurationError

                raise ConfigurationError(
                    f"webmail.submission {wanted!r} names no SMTP listener; known: "
                    f"{', '.join(s.config.name for s in smtp) or 'none'}", self.config.source)
            return chosen[0]
        if not smtp:
            from ..api import ConfigurationError

            raise ConfigurationError("webmail needs an SMTP listener to send through "
                                     "(smtpservers)", self.config.source)
        # A submission listener (AUTH before MAIL) first, then any that requires AUTH.
        ranked = sorted(smtp, key=lambda s: (not s.config.auth_before_mail,
                                             str(s.config.auth_required).lower() != "true"))
        return ranked[0]

    def serve_static(self, call: WebCall):
        name = call.params["name"]
        data = self.static.get(name)
        if data is None:
            raise HTTPError(404, "Not found", "no such file")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(200, raw=data, content_type=f"{kind}; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    def startService(self):
        # Sessions idle past their time are dropped every minute (an idle one is
        # refused at once anyway; this keeps the table small).
        from twisted.internet.task import LoopingCall

        self._expiry = LoopingCall(self._expire)
        self._expiry.clock = self.reactor
        self._expiry.start(60.0, now=False)
        return super().startService()

    def _expire(self) -> defer.Deferred:
        return self.sessions.expire().addErrback(
            lambda f: log.failure("webmail: dropping idle sessions failed", f))

    def stopService(self):
        if getattr(self, "_expiry", None) is not None and self._expiry.running:
            self._expiry.stop()
        return super().stopService()


def _static_param():
    from .http import Param

    return Param("name", {"type": "string", "maxLength": 40,
                          "pattern": r"^[a-z]+\.(js|css)$"}, required=True)


def webmail_service(config, server) -> WebmailService | None:
    """The webmail listener of ``server`` when ``webmail.enabled`` is true."""
    cfg = webmail_config(config)
    if not cfg.enabled:
        return None
    return WebmailService(server, cfg)
