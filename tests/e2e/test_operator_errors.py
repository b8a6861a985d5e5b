"""Bad input from operators: every configuration error and CLI misuse gives one line
naming the file (and line), the key or command, and the fix; exit status is non-zero;
the server never starts half-configured (no listener bound, no listeners.json).
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import yaml

from tests.soak.harness import local_only_processors
from tests.support.certs import make_cert
from tests.support.server import ROOT, _env, base_config


def good_config(tmp_path) -> dict:
    return base_config(tmp_path / "var", processors=local_only_processors())


def mailet_mta(tmp_path, *args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailet_mta", *args], input=stdin,
                          capture_output=True, text=True, cwd=tmp_path, env=_env(),
                          timeout=60)


def check_config_in_process(path, capsys) -> subprocess.CompletedProcess:
    """``mailet-mta check-config`` through the CLI's main(), without a new interpreter."""
    from mailet_mta.cli import main

    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess([], code, captured.out, captured.err)


def error_line(result) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()
             and "GetPassWarning" not in line and "fallback_getpass" not in line
             and "may be echoed" not in line]
    assert len(lines) <= 2, result.stderr          # one message (argparse adds its usage)
    return lines[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bad(config: dict, **changes) -> dict:
    for path, value in changes.items():
        node = config
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        last = keys[-1]
        if value is DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return config


DELETE = object()
CONFIG_ERRORS = [
    # (name, changes, words the message must hold)
    ("typo_in_top_level_key", {"servername": ["example.com"]}, ["servername", "did you mean"]),
    ("typo_in_listener_key", {"smtpservers__0__authRequierd": True},
     ["authRequierd", "did you mean"]),
    ("bad_auth_required", {"smtpservers__0__authRequired": "maybe"}, ["authRequired", "announce"]),
    ("bad_authorized_address", {"smtpservers__0__authorizedAddresses": ["10.0.0.300/8"]},
     ["10.0.0.300"]),
    ("bad_servername", {"servernames": ["exa mple.com"]}, ["exa mple.com"]),
    ("unknown_mailet", {"spoolmanager__processors__root__mailets__0__class": "NoSuchMailet"},
     ["NoSuchMailet"]),
    ("unknown_matcher", {"spoolmanager__processors__root__mailets__0__match": "NoSuchMatcher"},
     ["NoSuchMatcher"]),
    ("to_unknown_processor", {"spoolmanager__processors__root__mailets__2__parameters":
                              {"processor": "nowhere"}}, ["nowhere"]),
    ("no_root_processor", {"spoolmanager__processors__root": DELETE}, ["root"]),
    ("negative_limit", {"smtpservers__0__connectionLimit": -1}, ["connectionLimit"]),
    ("bad_size", {"smtpservers__0__maxmessagesize": "lots"}, ["maxmessagesize"]),
    ("bad_timeout", {"smtpservers__0__connectionTimeout": "soon"}, ["connectionTimeout"]),
    ("missing_tls_files", {"smtpservers__0__tls": {"certificate": "/nonexistent/c.pem",
                                                   "privateKey": "/nonexistent/k.pem"}},
     ["/nonexistent/c.pem"]),
    ("bad_log_level", {"logging": {"level": "loud"}}, ["loud"]),
    ("duplicate_spelling", {"smtpservers__0__auth_required": "true"}, ["same thing"]),
]


@pytest.mark.parametrize("name,changes,words", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_error_is_one_line_with_file_line_and_the_server_does_not_start(
        tmp_path, capsys, name, changes, words):
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(bad(good_config(tmp_path), **changes), sort_keys=False))
    check = error_line(check_config_in_process(path, capsys))
    serve = mailet_mta(tmp_path, "serve", "--config", str(path))
    line = error_line(serve)
    for message in (check, line):
        assert "server.yaml" in message, message
        for word in words:
            assert word.lower() in message.lower(), message
    assert not (tmp_path / "var" / "listeners.json").exists()


def test_tls_key_that_does_not_fit_the_certificate_stops_the_start(tmp_path, capsys):
    """Twisted builds a TLS context at the first handshake: a wrong key must be refused
    when the file is read, not found by the first client."""
    cert, _key = make_cert(tmp_path / "a")
    _cert, other_key = make_cert(tmp_path / "b")
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(bad(good_config(tmp_path), smtpservers__0__tls={
        "certificate": str(cert), "privateKey": str(other_key)}), sort_keys=False))
    check = error_line(check_config_in_process(path, capsys))
    serve = mailet_mta(tmp_path, "serve", "--config", str(path))
    assert serve.returncode != 0
    for message in (check, error_line(serve)):
        assert "server.yaml" in message and "does not fit the certificate" in message, message
    assert not (tmp_path / "var" / "listeners.json").exists()


def test_listener_that_cannot_bind_stops_the_whole_server_with_the_address_named(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    free = free_port()
    config = good_config(tmp_path)
    config["smtpservers"][0]["listen"] = f"tcp:{free}:interface=127.0.0.1"
    config["smtpservers"][1]["listen"] = f"tcp:{port}:interface=127.0.0.1"
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        line = error_line(mailet_mta(tmp_path, "serve", "--config", str(path)))
    finally:
        busy.close()
    assert str(port) in line, line
    with socket.socket() as probe:                   # the first listener is gone too
        assert probe.connect_ex(("127.0.0.1", free)) != 0
    assert not (tmp_path / "var" / "listeners.json").exists()


def test_data_dir_that_is_a_file_is_named_in_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    config = good_config(tmp_path)
    config["storage"]["data_dir"] = str(tmp_path / "afile" / "var")
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    line = error_line(mailet_mta(tmp_path, "serve", "--config", str(path)))
    assert "afile" in line


def test_unreachable_database_is_named_in_one_line(tmp_path):
    config = good_config(tmp_path)
    config["storage"]["url"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    line = error_line(mailet_mta(tmp_path, "serve", "--config", str(path)))
    assert "127.0.0.1" in line and "database" in line.lower(), line


@pytest.mark.parametrize("args,stdin,words", [
    (["serve", "--config", "nope.yaml"], "", ["nope.yaml"]),
    (["check-config", "server.txt"], "", [".yaml"]),
    (["frobnicate"], "", ["frobnicate"]),
    (["users", "add", "not an address", "--password-stdin"], "pw\n", ["not an address"]),
    (["users", "add", "alice@example.com"], "", ["--password-stdin"]),
    (["users", "add", "alice@example.com", "--password-stdin"], "\n", ["password"]),
    (["users", "remove", "nobody@example.com"], "", ["nobody@example.com"]),
    (["domains", "add", "bad domain"], "", ["bad domain"]),
    (["mailbox", "list", "nobody@example.com"], "", ["nobody@example.com"]),
    (["repository", "show", "999999"], "", ["999999"]),
], ids=["missing_config", "unknown_format", "unknown_command", "bad_user_address",
        "password_without_tty", "empty_password", "remove_unknown_user", "bad_domain",
        "mailbox_of_unknown_user", "unknown_repository_mail"])
def test_cli_misuse_is_one_line_naming_the_thing_and_the_fix(tmp_path, args, stdin, words):
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(good_config(tmp_path), sort_keys=False))
    (tmp_path / "server.txt").write_text("x")
    if args[0] not in ("serve", "check-config", "frobnicate"):
        args = [*args, "--config", str(path)]
        mailet_mta(tmp_path, "db", "upgrade", "--config", str(path))   # an empty database
    line = error_line(mailet_mta(tmp_path, *args, stdin=stdin))
    for word in words:
        assert word.lower() in line.lower(), line


def test_check_config_accepts_the_shipped_examples():
    for name in ("mailet-mta.yaml", "config.xml"):
        result = subprocess.run([sys.executable, "-m", "mailet_mta", "check-config",
                                 str(ROOT / "conf" / name)], capture_output=True, text=True,
                                env=_env(), timeout=60)
        assert "Traceback" not in result.stderr, result.stderr
