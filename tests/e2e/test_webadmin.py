"""The admin HTTP API against the real server over HTTP (httpx, curl, schemathesis).

One server per module: an SMTP listener for strangers that keeps mail for unknown
local users (the ``address-error`` repository), a submission listener for users, POP3,
and the ``webadmin`` listener on a free loopback port. Remote mail goes to a closed
loopback port, so it stays in the outgoing queue.
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, base_config, pop3_messages, wait_for

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webadmin")
    config = base_config(tmp / "var", servernames=["example.com"])
    config["smtpservers"][0].update(authorizedAddresses=[], rejectUnknownLocalUsers=False)
    config["dns"] = {"hosts": {"remote.test": ["127.0.0.1:9"]}}
    config["webadmin"] = {"enabled": True, "port": 0, "maxPageSize": 50}
    srv = ServerProcess(tmp, config)
    srv.start()
    srv.token = srv.admin("webadmin", "token", "create", "e2e-admin").strip()
    yield srv
    srv.stop()


@pytest.fixture()
def api(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port('webadmin')}",
                      headers={"Authorization": f"Bearer {server.token}"},
                      timeout=30) as client:
        yield client


def problem(response, status: int) -> dict:
    """The RFC 9457 document of an error answer."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def send(server, listener: str, sender: str, rcpt: str, subject: str,
         login: tuple[str, str] | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", server.port(listener), timeout=30) as client:
        client.ehlo("client.test")
        if login:
            client.login(*login)
        client.sendmail(sender, [rcpt], f"From: {sender}\r\nTo: {rcpt}\r\n"
                                        f"Subject: {subject}\r\n\r\nhello\r\n")


def accepted(server, *args) -> bool:
    try:
        send(server, "smtp", *args)
    except smtplib.SMTPRecipientsRefused:
        return False
    return True


# -- the whole flow -------------------------------------------------------------------------
def test_domain_user_repository_reprocess_and_queue_through_the_api(server, api):
    assert api.put("/domains/Example.ORG").json() == {"name": "example.org"}
    assert "already exists" in problem(api.put("/domains/example.org"), 409)["detail"]
    names = [d["name"] for d in api.get("/domains").json()["items"]]
    assert {"example.com", "example.org"} <= set(names)

    # Mail for a user who does not exist yet is kept in the address-error repository
    # (once the server's directory, reloaded within a second, has the new domain).
    wait_for(lambda: accepted(server, "someone@remote.test", "carol@example.org",
                              "before carol"), what="example.org to become local")
    repos = wait_for(lambda: {r["name"]: r["mails"] for r in
                              api.get("/mailRepositories").json()["items"]}
                     .get("address-error"), what="the address-error record")
    assert repos == 1
    page = api.get("/mailRepositories/address-error/mails").json()
    assert page["total"] == 1 and page["items"][0]["recipients"] == ["carol@example.org"]
    mail_id = page["items"][0]["id"]
    detail = api.get(f"/mailRepositories/address-error/mails/{mail_id}").json()
    assert detail["sender"] == "someone@remote.test" and detail["size"] > 0
    eml = api.get(f"/mailRepositories/address-error/mails/{mail_id}/eml")
    assert eml.headers["content-type"] == "message/rfc822"
    assert b"Subject: before carol" in eml.content
    problem(api.get("/mailRepositories/address-error/mails/999999"), 404)

    # Create the user, then reprocess the kept mail: it is delivered to her.
    created = api.put("/users/Carol@example.org", json={"password": "s3cret", "quota": "10m"})
    assert created.status_code == 201 and created.json() == {"name": "carol@example.org"}
    problem(api.put("/users/carol@example.org", json={"password": "x"}), 409)
    problem(api.put("/users/dave@elsewhere.test", json={"password": "x"}), 422)
    problem(api.put("/users/not-an-address", json={"password": "x"}), 422)
    user = api.get("/users/carol@example.org").json()
    assert user["quota"] == 10 * 1024 * 1024 and user["used"] == 0
    bad = problem(api.post("/mailRepositories/address-error/reprocess",
                           json={"processor": "no-such"}), 422)
    assert "no such processor" in bad["detail"]
    moved = api.post("/mailRepositories/address-error/reprocess",
                     json={"processor": "root", "id": mail_id}).json()["moved"]
    assert [m["state"] for m in moved] == ["root"]
    messages = wait_for(lambda: pop3_messages(server, "carol@example.org", "s3cret"),
                        what="the reprocessed mail in carol's mailbox")
    assert b"Subject: before carol" in messages[0]
    assert api.get("/mailRepositories/address-error/mails").json()["total"] == 0

    # Remote mail waits in the outgoing queue (its next hop is a closed port).
    send(server, "submission", "carol@example.org", "far@remote.test", "to far",
         login=("carol@example.org", "s3cret"))
    entries = wait_for(lambda: api.get("/queue", params={"destination": "remote.test"})
                       .json()["items"], what="the queue entry")
    entry = entries[0]
    assert entry["domain"] == "remote.test" and entry["sender"] == "carol@example.org"
    groups = api.get("/queue/destinations").json()["items"]
    assert any(g["destination"] == "remote.test" for g in groups)
    assert api.get(f"/queue/{entry['id']}").json()["mail"] == entry["mail"]
    assert api.post(f"/queue/{entry['id']}/retry").json() == {"due": 1}
    assert api.post("/queue/flush", params={"destination": "remote.test"}).json()["due"] >= 1
    assert api.delete(f"/queue/{entry['id']}").status_code == 204
    problem(api.get(f"/queue/{entry['id']}"), 404)
    problem(api.delete(f"/queue/{entry['id']}"), 404)

    # Password, quota, delete.
    assert api.put("/users/carol@example.org/password",
                   json={"password": "n3w"}).status_code == 204
    assert len(pop3_messages(server, "carol@example.org", "n3w")) == 1
    assert api.put("/users/carol@example.org/quota", json={"quota": None}).json() == {
        "name": "carol@example.org", "quota": None}
    problem(api.delete("/domains/example.org"), 409)          # carol is still there
    assert api.delete("/users/carol@example.org").status_code == 204
    problem(api.get("/users/carol@example.org"), 404)
    problem(api.delete("/users/carol@example.org"), 404)
    assert api.delete("/domains/example.org").json() == {"name": "example.org",
                                                         "still_local": False}
    problem(api.delete("/domains/example.org"), 404)

    # Every change was logged with the name of the token that made it.
    server.wait_log("webadmin: e2e-admin PUT /domains/Example.ORG -> 201",
                    "webadmin: e2e-admin DELETE /users/carol@example.org -> 204")
    log = server.settled_log()
    assert "s3cret" not in log and server.token not in log


def test_mappings_are_added_listed_and_removed(api):
    added = api.post("/mappings", json={"source": "Sales@example.com",
                                        "targets": ["a@example.net", "b@example.net"]})
    assert added.status_code == 201, added.text
    assert added.json()["added"] == ["a@example.net", "b@example.net"]
    problem(api.post("/mappings", json={"source": "sales@example.com",
                                        "targets": ["a@example.net"]}), 409)
    problem(api.post("/mappings", json={"source": "x@not-local.test",
                                        "targets": ["a@example.net"]}), 422)
    listed = api.get("/mappings", params={"source": "sales@example.com"}).json()["items"]
    assert [(m["target"], m["kind"]) for m in listed] == [("a@example.net", "forward"),
                                                          ("b@example.net", "forward")]
    assert api.delete("/mappings/sales@example.com/targets/a@example.net").json() == {
        "removed": [{"source": "sales@example.com", "target": "a@example.net"}]}
    assert len(api.delete("/mappings/sales@example.com").json()["removed"]) == 1
    problem(api.delete("/mappings/sales@example.com"), 404)


# -- authentication ---------------------------------------------------------------------------
def test_requests_without_a_valid_token_get_401_and_a_revoked_token_stops_working(server):
    base = f"http://127.0.0.1:{server.port('webadmin')}"
    token = server.cli("webadmin", "token", "create", "short-lived").stdout.strip()
    assert re.fullmatch(r"mwa_[A-Za-z0-9_-]{43}", token)
    with httpx.Client(base_url=base, timeout=30) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": token},
                        {"Authorization": "Basic " + token},
                        {"Authorization": "Bearer " + "x" * 5000}):
            answer = client.get("/domains", headers=headers)
            problem(answer, 401)
            assert answer.headers["www-authenticate"].startswith("Bearer")
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/domains", headers=bearer).status_code == 200
        assert "short-lived" in server.cli("webadmin", "token", "list").stdout
        assert token not in (server.data_dir / "mailet-mta.sqlite3").read_bytes().decode(
            "latin-1")
        server.cli("webadmin", "token", "revoke", "short-lived")
        problem(client.get("/domains", headers=bearer), 401)
        assert client.get("/healthcheck").json()["status"] == "healthy"
        assert client.get("/openapi.json").json()["openapi"] == "3.1.0"


# -- bounds and errors ------------------------------------------------------------------------
def test_a_body_over_the_limit_is_refused_with_413_without_being_kept(api):
    big = b'{"password": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    answer = api.put("/users/big@example.com", content=big,
                     headers={"Content-Type": "application/json"})
    problem(answer, 413)
    problem(api.get("/users/big@example.com"), 404)


def test_a_chunked_body_over_the_limit_is_cut_while_it_arrives(api):
    def chunks():                     # no Content-Length: counted chunk by chunk
        yield b'{"password": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}'

    answer = api.put("/users/chunked@example.com", content=chunks(),
                     headers={"Content-Type": "application/json"})
    assert answer.request.headers["transfer-encoding"] == "chunked"
    problem(answer, 413)
    problem(api.get("/users/chunked@example.com"), 404)


def test_malformed_bodies_and_parameters_are_problems_not_errors(api):
    assert problem(api.put("/users/x@example.com", content=b"{not json",
                           headers={"Content-Type": "application/json"}), 400)
    problem(api.put("/users/x@example.com", content=b"password=x",
                    headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    assert "unknown field" in problem(api.put("/users/x@example.com",
                                              json={"password": "x", "admin": True}),
                                      422)["detail"]
    problem(api.put("/users/x@example.com", json={"password": 5}), 422)
    problem(api.get("/queue/abc"), 422)
    problem(api.get("/queue/99999999999999999999"), 422)
    problem(api.get("/no/such/thing"), 404)
    answer = api.patch("/domains")
    problem(answer, 405)
    assert answer.headers["allow"] == "GET"
    assert api.delete("/queue/destinations").headers["allow"] == "GET"   # not /queue/{id}
    assert api.get("/queue/flush").headers["allow"] == "POST"


def test_pages_are_bounded_by_max_page_size(api):
    for i in range(3):
        api.put(f"/domains/page{i}.example")
    first = api.get("/domains", params={"limit": 1, "offset": 1}).json()
    assert first["limit"] == 1 and first["offset"] == 1 and len(first["items"]) == 1
    assert first["total"] >= 4
    assert api.get("/domains", params={"limit": 50}).status_code == 200
    problem(api.get("/domains", params={"limit": 51}), 422)        # maxPageSize: 50
    problem(api.get("/domains", params={"limit": 0}), 422)
    problem(api.get("/domains", params={"offset": -1}), 422)


def test_healthcheck_names_the_database_blob_store_and_listeners(api):
    report = api.get("/healthcheck").json()
    names = {c["componentName"] for c in report["checks"]}
    assert report["status"] == "healthy"
    assert {"database", "blob store", "listener smtp (smtp)",
            "listener webadmin (http)"} <= names


# -- the documentation's examples, run with curl ------------------------------------------------
def doc_examples() -> list[str]:
    text = (ROOT / "docs" / "webadmin.md").read_text()
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_the_curl_examples_of_docs_webadmin_md_work(server):
    examples = doc_examples()
    assert len(examples) >= 5
    env = {"PATH": "/usr/bin:/bin", "WEBADMIN": f"http://127.0.0.1:{server.port('webadmin')}",
           "TOKEN": server.token}
    for example in examples:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", example], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{example}\n{result.stdout}\n{result.stderr}"


# -- the Host header (DNS rebinding) ------------------------------------------------------
def curl_status(server, *headers: str, http10: bool = False) -> str:
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"]
    for header in headers:
        cmd += ["-H", header]
    if http10:
        cmd.append("--http1.0")
    cmd.append(f"http://127.0.0.1:{server.port('webadmin')}/healthcheck")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout


def test_a_request_for_a_foreign_host_name_is_421_and_one_without_host_is_400(server):
    port = server.port("webadmin")
    assert curl_status(server) == "200"                              # Host: 127.0.0.1:port
    assert curl_status(server, f"Host: localhost:{port}") == "200"
    assert curl_status(server, "Host: EXAMPLE.com.") == "200"       # a servername
    assert curl_status(server, "Host: [::1]:8000") == "200"          # an IP literal
    assert curl_status(server, f"Host: rebound.attacker.test:{port}") == "421"
    assert curl_status(server, "Host: example.com.attacker.test") == "421"
    assert curl_status(server, "Host: localhost:x") == "400"
    assert curl_status(server, "Host:") == "400"                     # no Host at all
    assert curl_status(server, "Host:", http10=True) == "400"
    answer = httpx.get(f"http://127.0.0.1:{port}/healthcheck",
                       headers={"Host": "rebound.attacker.test"}, timeout=30)
    body = problem(answer, 421)
    assert body["title"] == "Misdirected request" and "hostnames" in body["detail"]


# -- the OpenAPI document against the live server -----------------------------------------------
def test_schemathesis_finds_no_server_error_and_no_schema_violation(server, tmp_path):
    url = f"http://127.0.0.1:{server.port('webadmin')}/openapi.json"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", url,
         "-H", f"Authorization: Bearer {server.token}", "--max-examples", "5",
         # Every check (no 5xx, answers as documented, auth not ignored, deleted
         # things gone, 405 with Allow…) except positive_data_acceptance: the schema
         # cannot say every rule of a mail address or domain name (those are 422).
         "--seed", "1", "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--request-timeout", "10", "--no-color"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert "Tested: 31" in result.stdout or "Tested: 30" in result.stdout, summary
    assert "Traceback" not in server.log_text()


def test_the_openapi_document_lists_exactly_the_served_routes(api):
    doc = api.get("/openapi.json").json()
    operations = {(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item}
    assert ("GET", "/healthcheck") in operations and ("PUT", "/users/{user}") in operations
    for method, path in operations:
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        answer = api.request(method, concrete, json={} if method in ("PUT", "POST") else None)
        unrouted = answer.status_code == 405 or (
            answer.status_code == 404 and answer.json()["detail"].startswith("no such resource"))
        assert not unrouted, (method, path, answer.text)
    assert json.dumps(doc).count('"operationId"') == len(operations)


# -- large messages and TLS ------------------------------------------------------------------
def test_a_large_stored_message_downloads_whole_in_chunks(server, api):
    body = "".join(f"line {i:06d} of a long message\r\n" for i in range(12000))  # ~380 KB
    send(server, "smtp", "someone@remote.test", "big@example.com", "big one\r\n\r\n" + body)
    mails = wait_for(lambda: [m for m in api.get("/mailRepositories/address-error/mails")
                              .json()["items"] if m["recipients"] == ["big@example.com"]],
                     what="the large record")
    url = f"/mailRepositories/address-error/mails/{mails[0]['id']}/eml"
    size = api.get(url.removesuffix("/eml")).json()["size"]
    assert size > 64 * 1024                       # kept as a blob file, not inline
    with api.stream("GET", url) as answer:
        assert int(answer.headers["content-length"]) == size
        chunks = list(answer.iter_raw())
    data = b"".join(chunks)
    assert len(data) == size and b"line 011999 of a long message" in data
    assert api.delete(url.removesuffix("/eml")).status_code == 204


def test_https_uses_the_certificate_of_the_tls_block(tmp_path):
    from tests.support.certs import make_cert

    cert, key = make_cert(tmp_path / "tls")
    config = base_config(tmp_path / "var", pop3=[])
    config["webadmin"] = {"enabled": True, "port": 0, "https.enabled": True,
                          "tls": {"certificate": str(cert), "privateKey": str(key)}}
    with ServerProcess(tmp_path, config) as srv:
        token = srv.admin("webadmin", "token", "create", "tls").strip()
        url = f"https://127.0.0.1:{srv.port('webadmin')}"
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=trust, timeout=30) as client:
            answer = client.get("/domains", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200 and answer.json()["total"] >= 1
        with pytest.raises(httpx.HTTPError):       # the API speaks no plain HTTP there
            httpx.get(url.replace("https", "http") + "/healthcheck", timeout=10)
        curl = subprocess.run(["curl", "-sS", "--fail-with-body", "--cacert", str(cert),
                               f"{url}/healthcheck"], capture_output=True, text=True,
                              timeout=30)
        assert curl.returncode == 0 and json.loads(curl.stdout)["status"] == "healthy"


def test_the_api_works_the_same_on_postgresql(tmp_path, pg_url):
    config = base_config(tmp_path / "var", pop3=[])
    config["storage"]["url"] = pg_url
    config["webadmin"] = {"enabled": True, "port": 0}
    with ServerProcess(tmp_path, config) as srv:
        token = srv.admin("webadmin", "token", "create", "pg").strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.port('webadmin')}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            assert api.put("/domains/pg.example").status_code == 201
            assert api.put("/users/ann@pg.example", json={"password": "pw"}).status_code == 201
            problem(api.put("/users/ann@pg.example", json={"password": "pw"}), 409)
            users = api.get("/users", params={"domain": "pg.example"}).json()
            assert [u["name"] for u in users["items"]] == ["ann@pg.example"]
            nodes = api.get("/nodes").json()["items"]
            assert len(nodes) == 1 and nodes[0]["alive"]
            assert api.get("/healthcheck").json()["status"] == "healthy"
            assert api.delete("/users/ann@pg.example").status_code == 204
