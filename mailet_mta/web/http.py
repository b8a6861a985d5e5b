"""A small JSON HTTP layer on ``twisted.web``: one route table, bounded bodies, problems.

A :class:`Route` says everything about one operation — method, path template, its
parameters and body as JSON Schema, its answers — and :class:`Router` serves the
table: it matches the path, checks the bearer token, reads and checks the parameters
and the body, runs the handler (which returns a Deferred) and writes JSON, or an
RFC 9457 problem document (``application/problem+json``) for every error. The OpenAPI
document (:mod:`.openapi`) is generated from the same table, so the two cannot drift.

Limits: the request body is counted while it arrives and dropped past
``max_body_size`` (answer 413, nothing kept); a path has at most ``MAX_SEGMENTS``
segments; integers are bounded to 64-bit (SQL) range; strings to ``maxLength``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from ..admin import AdminError

log = Logger(namespace="mailet_mta.webadmin")

PROBLEM = "application/problem+json"
MAX_SEGMENTS = 16
MAX_INT = 2**53 - 1          # exact in JSON numbers and in every SQL integer column
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


class HTTPError(Exception):
    """An answer other than the route's success: ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, title: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}


@dataclass
class Param:
    """A path or query parameter: its JSON Schema says its type and bounds."""

    name: str
    schema: dict
    description: str = ""
    required: bool = False


@dataclass
class Response:
    """What a handler answers: JSON ``body`` (None: no content), or ``raw`` bytes /
    a :class:`Stream` with its ``content_type``."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    stream: Any = None
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


@dataclass
class Route:
    """One operation of the API."""

    method: str
    path: str
    handler: Callable[..., Any]
    summary: str
    tag: str
    responses: dict[int, tuple[str, dict | None]]     # status → (description, schema)
    path_params: list[Param] = field(default_factory=list)
    query: list[Param] = field(default_factory=list)
    body: dict | None = None
    public: bool = False
    media: dict[int, str] = field(default_factory=dict)   # status → non-JSON media type
    description: str = ""

    def __post_init__(self):
        self.segments = [s for s in self.path.strip("/").split("/") if s]
        self.literals = sum(1 for s in self.segments if not s.startswith("{"))
        names = [s[1:-1] for s in self.segments if s.startswith("{")]
        declared = [p.name for p in self.path_params]
        if names != declared:
            raise ValueError(f"{self.method} {self.path}: path parameters {names} are "
                             f"declared as {declared}")

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        found = {}
        for template, value in zip(self.segments, segments):
            if template.startswith("{"):
                found[template[1:-1]] = value
            elif template != value:
                return None
        return found


@dataclass
class Call:
    """One request as a handler sees it."""

    request: Any
    route: Route
    params: dict[str, Any]
    body: Any
    token: str | None        # the name of the token that authorised it


# -- checking values against their JSON Schema ------------------------------------------
def convert(value: str, schema: dict, where: str) -> Any:
    """A path or query string as the type its schema says; HTTPError 422 otherwise."""
    kind = schema.get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]{1,16}", value):
            raise invalid(f"{where} must be a whole number, not {value!r}")
        return check(int(value), schema, where)
    if kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise invalid(f"{where} must be true or false, not {value!r}")
        return value.lower() == "true"
    return check(value, schema, where)


def check(value: Any, schema: dict, where: str) -> Any:
    """``value`` (parsed JSON) checked against the subset of JSON Schema the route
    table uses: type (one or a list), properties/required/additionalProperties, items,
    enum, minimum/maximum, minLength/maxLength, maxItems/minItems."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if kinds and not any(_is(value, k) for k in kinds):
        raise invalid(f"{where} must be {' or '.join(kinds)}")
    if value is None:
        return value
    if "enum" in schema and value not in schema["enum"]:
        raise invalid(f"{where} must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", -MAX_INT) or value > schema.get("maximum", MAX_INT):
            raise invalid(f"{where} must be between {schema.get('minimum', -MAX_INT)} and "
                          f"{schema.get('maximum', MAX_INT)}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise invalid(f"{where} must not be empty")
        if len(value) > schema.get("maxLength", 4096):
            raise invalid(f"{where} is longer than {schema.get('maxLength', 4096)} "
                          f"characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise invalid(f"{where} {value!r} has not the form {schema['pattern']}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", 1000) or len(value) < schema.get("minItems", 0):
            raise invalid(f"{where} must have {schema.get('minItems', 0)} to "
                          f"{schema.get('maxItems', 1000)} items")
        return [check(item, schema.get("items", {}), f"{where}[{i}]")
                for i, item in enumerate(value)]
    if isinstance(value, dict):
        return _check_object(value, schema, where)
    return value


def _check_object(value: dict, schema: dict, where: str) -> dict:
    props = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            raise invalid(f"{where} needs {name}")
    if schema.get("additionalProperties") is False:
        extra = sorted(set(value) - set(props))
        if extra:
            raise invalid(f"{where}: unknown field {extra[0]!r}; known: "
                          f"{', '.join(sorted(props))}")
    return {k: check(v, props.get(k, {}), f"{where}.{k}") for k, v in value.items()}


def _is(value: Any, kind: str) -> bool:
    return {"string": isinstance(value, str), "null": value is None,
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "array": isinstance(value, list), "object": isinstance(value, dict)}[kind]


def invalid(detail: str) -> HTTPError:
    return HTTPError(422, "Invalid value", detail)


# -- the request with a bounded body ----------------------------------------------------
class BoundedRequest(server.Request):
    """A request whose body is counted as it arrives and dropped past ``max_body``
    (the answer is then 413 and nothing of the body is kept)."""

    max_body = 1024 * 1024

    def gotLength(self, length):
        self.body_size = 0
        self.body_too_large = length is not None and length > self.max_body
        super().gotLength(None if self.body_too_large else length)

    def handleContentChunk(self, data):
        if self.body_too_large:
            return
        self.body_size += len(data)
        if self.body_size > self.max_body:
            self.body_too_large = True
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)


# -- the dispatcher ----------------------------------------------------------------------
class Router(resource.Resource):
    """Serves a route table; ``authorize(token) → Deferred(name or None)`` checks
    bearer tokens, ``page_limit`` bounds list pages."""

    isLeaf = True

    def __init__(self, routes: list[Route], authorize, max_body: int, hosts=None):
        super().__init__()
        self.routes = routes
        self.authorize = authorize
        self.max_body = max_body
        self.hosts = hosts        # a .host_check.HostCheck, or None: every Host

    def render(self, request):
        request.webadmin_gone = False            # the client went away before the answer
        request.notifyFinish().addErrback(lambda _f: setattr(request, "webadmin_gone", True))
        d = defer.maybeDeferred(self._serve_for_host, request)
        d.addErrback(self._error, request)
        d.addCallback(self._write, request)
        d.addErrback(lambda f: log.failure("webadmin: writing an answer failed", f))
        return server.NOT_DONE_YET

    def _serve_for_host(self, request):
        """Refuse a request for a name this listener does not answer, then serve it."""
        if self.hosts is not None:
            self.hosts.check(request)
        return self._serve(request)

    @defer.inlineCallbacks
    def _serve(self, request):
        route, params = self._route(request)
        token = None
        if not route.public:
            token = yield self._token(request)
        params.update(self._query(request, route))
        body = self._body(request, route)
        call = Call(request, route, params, body, token)
        request.webadmin_call = call
        result = yield defer.maybeDeferred(route.handler, call)
        return result

    def _route(self, request) -> tuple[Route, dict]:
        raw = request.path.decode("latin-1").split("?")[0]
        segments = [unquote(s, errors="replace") for s in raw.strip("/").split("/") if s]
        if len(segments) > MAX_SEGMENTS:
            raise HTTPError(404, "Not found", "no such resource")
        method = request.method.decode("latin-1")
        # The paths with the most literal segments win: /queue/destinations is not
        # /queue/{id}.
        matching = [(route, found) for route in self.routes
                    if (found := route.match(segments)) is not None]
        best = max((r.literals for r, _f in matching), default=0)
        allowed = []
        for route, found in matching:
            if route.literals != best:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                params = {p.name: convert(found[p.name], p.schema, p.name)
                          for p in route.path_params}
                return route, params
            allowed.append(route.method)
        if allowed:
            raise HTTPError(405, "Method not allowed",
                            f"{method} is not allowed here; allowed: {', '.join(allowed)}",
                            {"Allow": ", ".join(sorted(set(allowed)))})
        raise HTTPError(404, "Not found", f"no such resource: {raw}")

    @defer.inlineCallbacks
    def _token(self, request):
        header = (request.getHeader("authorization") or "").strip()
        scheme, _, token = header.partition(" ")
        name = None
        if scheme.lower() == "bearer" and token.strip():
            name = yield self.authorize(token.strip())
        if name is None:
            raise HTTPError(401, "Unauthorized",
                            "a valid bearer token is needed (Authorization: Bearer TOKEN; "
                            "create one with mailet-mta webadmin token create NAME)",
                            {"WWW-Authenticate": 'Bearer realm="mailet-mta webadmin"'})
        return name

    def _query(self, request, route: Route) -> dict:
        out = {}
        for param in route.query:
            values = request.args.get(param.name.encode(), [])
            if not values:
                if param.required:
                    raise invalid(f"the query parameter {param.name} is required")
                out[param.name] = param.schema.get("default")
                continue
            text = values[-1].decode("utf-8", "replace")
            out[param.name] = convert(text, param.schema, f"query parameter {param.name}")
        return out

    def _body(self, request, route: Route):
        if getattr(request, "body_too_large", False):
            raise HTTPError(413, "Request body too large",
                            f"the request body is larger than {self.max_body} octets")
        if route.body is None:
            return None
        data = request.content.read(self.max_body + 1) if request.content else b""
        if not data.strip():
            data = b"{}"
        kind = (request.getHeader("content-type") or "application/json").split(";")[0]
        if kind.strip().lower() != "application/json":
            raise HTTPError(415, "Unsupported media type",
                            f"send the body as application/json, not {kind}")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, "Malformed JSON", f"the body is not JSON: {exc}") from None
        return check(value, route.body, "the body")

    # -- answers ---------------------------------------------------------------------------
    def _error(self, failure: Failure, request) -> Response:
        exc = failure.value
        if isinstance(exc, AdminError):
            return problem(request, exc.status, exc.title, exc.message)
        if isinstance(exc, HTTPError):
            return problem(request, exc.status, exc.title, exc.detail, exc.headers)
        log.failure("webadmin: {method} {path} failed", failure,
                    method=request.method.decode("latin-1"),
                    path=request.path.decode("latin-1"))
        return problem(request, 500, "Internal server error",
                       "the server could not complete the request; its log says why")

    def _write(self, answer: Response, request) -> None:
        call = getattr(request, "webadmin_call", None)
        if call is not None and call.route.method in MUTATING:
            log.info("webadmin: {token} {method} {path} -> {status}", token=call.token,
                     method=call.route.method, path=request.path.decode("latin-1"),
                     status=answer.status)
        if request.webadmin_gone:
            return
        request.setResponseCode(answer.status)
        request.setHeader("Cache-Control", "no-store")
        request.setHeader("X-Content-Type-Options", "nosniff")
        for name, value in answer.headers.items():
            request.setHeader(name, value)
        if answer.stream is not None:
            request.setHeader("Content-Type", answer.content_type)
            answer.stream.start(request)
            return
        if answer.raw is not None:
            payload = answer.raw
        elif answer.body is None:
            payload = b""
        else:
            payload = json.dumps(answer.body, separators=(",", ":")).encode()
        if answer.status != 204:
            request.setHeader("Content-Type", answer.content_type)
            request.setHeader("Content-Length", str(len(payload)))
        if request.method != b"HEAD":
            request.write(payload)
        request.finish()


def problem(request, status: int, title: str, detail: str,
            headers: dict | None = None) -> Response:
    """An RFC 9457 problem document."""
    return Response(status, {"type": "about:blank", "title": title, "status": status,
                             "detail": detail,
                             "instance": request.path.decode("latin-1")[:512]},
                    content_type=PROBLEM, headers=headers or {})
