"""The ``webadmin:`` section, the token table and the API's value checks, without a server."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from twisted.logger import globalLogPublisher

from mailet_mta.admin import Conflict, Invalid, NotFound, tokens
from mailet_mta.api import ConfigurationError
from mailet_mta.config import load_config_text
from mailet_mta.config.webadmin import webadmin_config
from mailet_mta.storage import schema
from mailet_mta.web.http import MAX_INT, HTTPError, check, convert
from tests.support.certs import make_cert
from tests.unit import test_users_storage

HEAD = "servernames: [example.com]\n"
db = test_users_storage.db          # the fixture: a migrated database, SQLite and PostgreSQL


def webadmin(text: str):
    return webadmin_config(load_config_text(HEAD + text, "yaml"))


def test_the_api_is_off_and_on_loopback_by_default():
    cfg = webadmin_config(load_config_text(HEAD, "yaml"))
    assert not cfg.enabled and cfg.host == "127.0.0.1" and cfg.port == 8000
    assert cfg.endpoint == "tcp:8000:interface=127.0.0.1"
    assert cfg.max_body_size == 1024 * 1024 and cfg.max_page_size == 1000


def test_james_names_and_tls_block_are_read(tmp_path):
    cert, key = make_cert(tmp_path)
    cfg = webadmin(f"webadmin:\n  enabled: true\n  port: 8443\n  host: '::1'\n"
                   f"  https.enabled: true\n  maxBodySize: 64k\n  maxPageSize: 20\n"
                   f"  tls: {{certificate: {cert}, privateKey: {key}}}\n")
    assert cfg.enabled and cfg.https_enabled and cfg.tls.certificate == str(cert)
    assert cfg.endpoint == "tcp6:8443:interface=\\:\\:1"
    assert cfg.max_body_size == 64 * 1024 and cfg.max_page_size == 20


def test_the_xml_file_takes_the_same_keys():
    xml = ("<config><servernames><servername>example.com</servername></servernames>"
           "<webadmin><enabled>true</enabled><port>9000</port>"
           "<listen>tcp:0:interface=127.0.0.1</listen></webadmin></config>")
    with pytest.raises(ConfigurationError, match="both listen and host/port"):
        load_config_text(xml, "xml")
    cfg = webadmin_config(load_config_text(xml.replace("<port>9000</port>", ""), "xml"))
    assert cfg.enabled and cfg.endpoint == "tcp:0:interface=127.0.0.1"


@pytest.mark.parametrize("text, message", [
    ("webadmin: {enabled: true, https.enabled: true}", "needs a tls block"),
    ("webadmin: {port: 70000}", "must be 0..65535"),
    ("webadmin: {maxBodySize: 10}", "at least 1k"),
    ("webadmin: {maxPageSize: 1000000}", "100000 or less"),
    ("webadmin: {maxPageSize: 0}", "webadmin.maxPageSize"),
    ("webadmin: {enable: true}", "did you mean 'enabled'"),
    ("webadmin: {tls: {certificate: a, privateKey: b, startTLS: true}}",
     "no meaning for the admin API"),
])
def test_mistakes_are_one_line_errors_naming_the_key(text, message):
    with pytest.raises(ConfigurationError, match=message):
        webadmin(text + "\n")


# -- tokens --------------------------------------------------------------------------------
def test_the_migrated_schema_matches_the_tables_in_schema_py(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []


def test_a_token_is_stored_hashed_found_by_itself_and_gone_when_revoked(db):
    with db.transaction() as conn:
        token = tokens.create_token(conn, None, "ops")
        with pytest.raises(Conflict):
            tokens.create_token(conn, None, "ops")
        other = tokens.create_token(conn, None, "ci.bot")
    assert token.startswith("mwa_") and len(token) == 4 + 43 and token != other
    with db.transaction() as conn:
        stored = conn.execute(schema.webadmin_tokens.select()).all()
        assert token not in repr(stored) and tokens.hash_token(token) in repr(stored)
        assert tokens.token_owner(conn, token) == "ops"
        assert tokens.token_owner(conn, other) == "ci.bot"
        assert tokens.token_owner(conn, token[:-1]) is None
        assert tokens.token_owner(conn, "") is None
        assert tokens.token_owner(conn, token + "x" * tokens.MAX_TOKEN_LENGTH) is None
        assert [t["name"] for t in tokens.list_tokens(conn)] == ["ci.bot", "ops"]
        tokens.revoke_token(conn, None, "ops")
        assert tokens.token_owner(conn, token) is None
        with pytest.raises(NotFound):
            tokens.revoke_token(conn, None, "ops")


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 65, "é"])
def test_token_names_are_short_and_plain(db, name):
    with db.transaction() as conn, pytest.raises(Invalid):
        tokens.create_token(conn, None, name)


# -- the checks of parameters and bodies -----------------------------------------------------
BODY = {"type": "object", "properties": {"password": {"type": "string", "minLength": 1,
                                                      "maxLength": 8},
                                         "n": {"type": ["integer", "null"], "minimum": 0}},
        "required": ["password"], "additionalProperties": False}


@pytest.mark.parametrize("value, message", [
    ({}, "needs password"),
    ({"password": ""}, "must not be empty"),
    ({"password": "123456789"}, "longer than 8"),
    ({"password": 1}, "must be string"),
    ({"password": "x", "n": -1}, "between 0 and"),
    ({"password": "x", "n": True}, "must be integer or null"),
    ({"password": "x", "admin": 1}, "unknown field 'admin'"),
    ([], "must be object"),
])
def test_bodies_outside_their_schema_are_422(value, message):
    with pytest.raises(HTTPError) as raised:
        check(value, BODY, "the body")
    assert raised.value.status == 422 and message in raised.value.detail


def test_path_and_query_integers_are_bounded_to_what_sql_and_json_hold():
    schema_ = {"type": "integer", "minimum": 1, "maximum": MAX_INT}
    assert convert("42", schema_, "id") == 42
    for text in ("0", "x", "1e3", str(MAX_INT + 1), "9" * 40):
        with pytest.raises(HTTPError):
            convert(text, schema_, "id")
    assert convert("TRUE", {"type": "boolean"}, "force") is True


# -- the router, in process ---------------------------------------------------------------
def _render(route_handler, path: bytes = b"/boom", method: bytes = b"GET", token="t"):
    from twisted.internet import defer
    from twisted.web.test.requesthelper import DummyRequest

    from mailet_mta.web.http import Route, Router

    routes = [Route("GET", "/boom", route_handler, "fails", "test", {200: ("ok", None)})]
    router = Router(routes, lambda presented: defer.succeed("ops" if presented == "t"
                                                           else None), 1024)
    request = DummyRequest(path.strip(b"/").split(b"/"))
    request.path, request.method = path, method
    request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    router.render(request)
    return request, json.loads(b"".join(request.written))


def test_a_handler_that_raises_is_a_500_problem_and_a_logged_failure():
    def boom(_call):
        raise RuntimeError("a bug")

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        request, body = _render(boom)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert request.responseCode == 500 and body["status"] == 500
    assert "a bug" not in json.dumps(body)              # no internals to the client
    assert request.responseHeaders.getRawHeaders(b"content-type") == [
        b"application/problem+json"]
    failures = [e["log_failure"] for e in events if "log_failure" in e]
    assert len(failures) == 1 and failures[0].check(RuntimeError)


def test_the_router_answers_401_before_running_the_handler():
    ran = []
    request, body = _render(lambda call: ran.append(call), token="wrong")
    assert request.responseCode == 401 and body["title"] == "Unauthorized" and not ran
