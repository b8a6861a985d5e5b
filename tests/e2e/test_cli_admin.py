"""The administrator's commands as run from a shell: twistd and serve failing in one line,
read-only commands without side effects, ``queue show`` by the mail's name, the log
formats, the domain commands, warnings at start-up. Every test runs the real CLI in a
separate process."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.server import ServerProcess, _env, base_config, wait_for

BIN = Path(sys.executable).parent


def mailet_mta(cwd, *args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailet_mta", *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd, env=_env(), timeout=60)


def one_line(result) -> str:
    """The single line a failing command prints on stderr (no traceback anywhere)."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- twistd and serve fail in one line ------------------------------------------------------
def test_twistd_with_a_configuration_error_prints_one_line_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("servernames: [example.com]\nbogus: 1\n")
    result = subprocess.run([str(BIN / "twistd"), "-n", "--pidfile=", "mailet-mta",
                             "--config", str(bad)], capture_output=True, text=True,
                            cwd=tmp_path, env=_env(), timeout=60)
    line = one_line(result)
    assert result.returncode == 1
    assert "bad.yaml:2" in line and "bogus" in line, line
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("listener", ["smtpservers", "pop3servers"])
def test_serve_on_a_busy_port_logs_no_traceback_and_says_it_in_one_line(tmp_path, listener):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = base_config(tmp_path / "var")
        config[listener][0]["listen"] = f"tcp:{port}:interface=127.0.0.1"
        path = write_config(tmp_path / "server.yaml", config)
        result = mailet_mta(tmp_path, "serve", "--config", str(path))
    line = one_line(result)
    assert f"127.0.0.1:{port}" in line and "server.yaml" in line, line
    assert "FirstError" not in result.stdout and "\n\t" not in result.stdout, result.stdout
    critical = [ln for ln in result.stdout.splitlines() if "could not" in ln]
    assert critical and all(f"127.0.0.1:{port}" in ln for ln in critical), result.stdout


def test_twistd_on_a_busy_port_stops_with_one_line_and_exit_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = base_config(tmp_path / "var")
        config["smtpservers"][0]["listen"] = f"tcp:{port}:interface=127.0.0.1"
        path = write_config(tmp_path / "server.yaml", config)
        result = subprocess.run([str(BIN / "twistd"), "-n", "--pidfile=", "mailet-mta",
                                 "--config", str(path)], capture_output=True, text=True,
                                cwd=tmp_path, env=_env(), timeout=60)
    line = one_line(result)
    assert result.returncode == 1 and line.startswith("mailet-mta: cannot listen:"), line
    assert f"127.0.0.1:{port}" in line and "server.yaml" in line, line
    critical = [ln for ln in result.stdout.splitlines() if "could not start" in ln]
    assert len(critical) == 1 and "FirstError" not in result.stdout, result.stdout
    assert not (tmp_path / "var" / "listeners.json").exists()


# -- read-only commands have no side effect -------------------------------------------------
READ_ONLY = [["users", "list"], ["queue", "list"], ["queue", "show", "1"], ["status"],
             ["mailbox", "list", "a@localhost"], ["domains", "list"],
             ["repository", "list"], ["nodes"], ["db", "current"],
             ["users", "remove", "a@localhost"], ["domains", "remove", "example.org"],
             ["webadmin", "token", "list"], ["webadmin", "token", "revoke", "ci"]]


@pytest.mark.parametrize("args", READ_ONLY, ids=["-".join(a[:3]) for a in READ_ONLY])
def test_command_without_a_database_creates_nothing_and_says_where_it_looked(tmp_path, args):
    line = one_line(mailet_mta(tmp_path, *args))
    assert str(tmp_path / "var" / "mailet-mta.sqlite3") in line, line
    assert "--config" in line
    assert list(tmp_path.iterdir()) == []


def test_read_only_command_on_an_empty_postgresql_database_creates_no_tables(tmp_path,
                                                                             pg_url):
    import sqlalchemy as sa

    config = base_config(tmp_path / "var")
    config["storage"]["url"] = pg_url
    path = write_config(tmp_path / "server.yaml", config)
    line = one_line(mailet_mta(tmp_path, "users", "list", "--config", str(path)))
    assert "no mailet-mta tables" in line and "db upgrade" in line, line
    assert "server.yaml" in line and "storage.url" in line
    engine = sa.create_engine(pg_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_status_exits_3_when_the_server_is_not_running_and_0_when_it_is(tmp_path):
    srv = ServerProcess(tmp_path, base_config(tmp_path / "var"))
    srv.admin("db", "upgrade")
    stopped = srv.cli("status", check=False)
    assert stopped.returncode == 3 and "server: not running" in stopped.stdout
    with srv:
        running = srv.cli("status", check=False)
        assert running.returncode == 0, running.stdout + running.stderr
        assert "server: running" in running.stdout


# -- queue show by the mail's name ----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_queue_show_accepts_the_name_from_the_smtp_reply(tmp_path):
    config = base_config(tmp_path / "var")
    config["dns"] = {"hosts": {"far.test": [f"127.0.0.1:{free_port()}"]}}
    with ServerProcess(tmp_path, config) as srv:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            s.ehlo()
            s.mail("a@example.com")
            s.rcpt("x@far.test")
            code, reply = s.data(b"Subject: q\r\n\r\nhi\r\n")
        assert code == 250, reply
        name = reply.decode().split("queued as ")[1].strip()
        wait_for(lambda: "far.test" in srv.admin("queue", "list"), timeout=30,
                 what="the mail in the outgoing queue")
        by_name = srv.cli("queue", "show", name)
        assert f"mail {name}" in by_name.stdout and "x@far.test" in by_name.stdout
        entry_id = by_name.stdout.split()[1].rstrip(":")
        by_id = srv.cli("queue", "show", entry_id)
        assert by_id.stdout.splitlines()[0] == by_name.stdout.splitlines()[0]
        missing = srv.cli("queue", "show", "no-such-mail", check=False)
        assert missing.returncode == 1 and "no-such-mail" in missing.stderr


# -- the log: JSON lines and Postfix-style relay= --------------------------------------------
class _Sink:
    """An aiosmtpd handler that accepts every mail."""

    def __init__(self):
        self.received = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append(envelope.rcpt_tos)
        return "250 2.0.0 Ok"


def test_json_log_is_one_object_per_line_with_message_and_plain_fields(tmp_path):
    from aiosmtpd.controller import Controller

    sink = _Sink()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    try:
        config = base_config(tmp_path / "var", logging={"level": "info", "format": "json"})
        config["dns"] = {"hosts": {"far.test": [f"127.0.0.1:{sink_port}"]}}
        with ServerProcess(tmp_path, config) as srv:
            with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
                s.sendmail("a@example.com", ["x@far.test"], b"Subject: j\r\n\r\nhi\r\n")
            wait_for(lambda: "status=sent" in srv.log_text(), timeout=30,
                     what="the remote delivery's line")
    finally:
        controller.stop()
    text = (tmp_path / "server.log").read_text()
    assert "\x1e" not in text
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(r, dict) and isinstance(r.get("message"), str) for r in records)
    queued = next(r for r in records if "status=queued" in r["message"])
    assert queued["sender"] == "a@example.com", queued
    assert all(not isinstance(v, (dict, list)) for r in records for v in r.values())
    sent = next(r for r in records if "status=sent" in r["message"])
    assert f"relay=127.0.0.1[127.0.0.1]:{sink_port} " in sent["message"], sent
    assert sent["level"] == "info" and sent["namespace"] == "mailet_mta.mail"


# -- domains, matcher conditions, YAML errors, pipes ---------------------------------------
def test_domains_add_and_remove_of_a_servername_say_it_comes_from_the_configuration(tmp_path):
    srv = ServerProcess(tmp_path, base_config(tmp_path / "var",
                                              servernames=["example.com"]))
    srv.admin("db", "upgrade")
    added = srv.cli("domains", "add", "Example.COM", check=False)
    assert added.returncode == 1 and "added" not in added.stdout
    assert "servernames" in one_line(added) and "server.yaml" in added.stderr
    removed = srv.cli("domains", "remove", "example.com", check=False)
    line = one_line(removed)
    assert "servernames" in line and "server.yaml" in line and "does not exist" not in line
    assert "example.com" in srv.cli("domains", "list").stdout


def test_a_matcher_that_takes_no_condition_refuses_one_naming_file_and_line(tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text(
        "servernames: [example.com]\n"
        "spoolmanager:\n"
        "  processors:\n"
        "    root:\n"
        "      - match: HostIsLocal=foo\n"
        "        class: Null\n"
        "    error:\n"
        "      - match: All\n"
        "        class: Null\n")
    line = one_line(mailet_mta(tmp_path, "check-config", str(config)))
    assert "server.yaml:5" in line and "HostIsLocal" in line and "'foo'" in line, line
    config.write_text(config.read_text().replace("HostIsLocal=foo", "Or=foo"))
    line = one_line(mailet_mta(tmp_path, "check-config", str(config)))
    assert "server.yaml:5" in line and "no condition" in line, line


def test_a_yaml_quote_left_open_is_reported_on_its_own_line(tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text("servernames: [example.com]\n"
                      "smtpservers:\n"
                      "  - name: smtp\n"
                      "    helloName: \"mx.example.com\n"
                      "    listen: tcp:0\n"
                      "storage:\n"
                      "  data_dir: var\n")
    line = one_line(mailet_mta(tmp_path, "check-config", str(config)))
    assert "server.yaml:4:" in line and "YAML syntax error" in line, line


def test_output_into_a_closed_pipe_ends_without_a_traceback(tmp_path):
    config = write_config(tmp_path / "server.yaml", base_config(tmp_path / "var"))
    for command in (f"check-config {config}", "--help"):
        # `true` exits at once without reading: the CLI writes into a closed pipe.
        result = subprocess.run(f"{sys.executable} -m mailet_mta {command} | true",
                                shell=True, capture_output=True, text=True, cwd=tmp_path,
                                env=_env(), timeout=60)
        assert "BrokenPipeError" not in result.stderr and "Traceback" not in result.stderr, \
            result.stderr


# -- the README and the systemd unit agree on where the program is --------------------------
def _shell_lines(markdown: str) -> list[str]:
    blocks = markdown.split("```sh\n")[1:]
    return [line for block in blocks for line in block.split("```")[0].splitlines()]


def test_the_systemd_unit_runs_the_program_where_the_readme_installs_it(tmp_path):
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    venvs = [line.split("python3 -m venv ")[1].split()[0] for line in _shell_lines(readme)
             if "python3 -m venv /" in line]
    assert venvs, "the README installs for production into a venv at an absolute path"
    program = f"{venvs[0]}/bin/mailet-mta"
    unit = (root / "conf" / "mailet-mta.service").read_text()
    execs = [line.split("=", 1)[1].split() for line in unit.splitlines()
             if line.startswith(("ExecStart", "ExecReload")) and "mailet-mta " in line]
    assert len(execs) >= 3 and all(argv[0] == program for argv in execs), execs
    # The unit's own command lines are valid for the real CLI.
    config = write_config(tmp_path / "mailet-mta.yaml", base_config(tmp_path / "var"))
    for argv in execs:
        args = [str(config) if a.endswith("/mailet-mta.yaml") else a for a in argv[1:]]
        if args[0] == "check-config":
            result = mailet_mta(tmp_path, *args)
            assert result.returncode == 0, result.stderr
        else:
            help_text = mailet_mta(tmp_path, args[0], "--help").stdout
            assert "--config" in help_text and args[1] == "--config"


def test_every_twistd_in_the_readme_is_the_venv_one():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    uses = [part for part in readme.split("twistd -n")[:-1]]
    assert uses and all(part.endswith(".venv/bin/") for part in uses), uses
    assert (BIN / "twistd").exists()


# -- warnings for a server nobody can use ---------------------------------------------------
def test_serve_and_check_config_warn_when_nobody_can_log_in_and_postmaster_has_no_mailbox(
        tmp_path):
    srv = ServerProcess(tmp_path, base_config(tmp_path / "var"))
    checked = mailet_mta(tmp_path, "check-config", str(srv.config_path))
    assert checked.returncode == 0, checked.stderr
    warnings = checked.stderr.strip().splitlines()
    assert len(warnings) == 2, checked.stderr
    assert "authRequired" in warnings[0] and "smtp, submission" in warnings[0]
    assert "postmaster@example.com" in warnings[1] and "no mailbox" in warnings[1]
    assert list(tmp_path.glob("var/*.sqlite3")) == []        # checking creates nothing
    with srv:
        srv.wait_log("no user exists", "postmaster@example.com has no mailbox")
    srv.add_user("postmaster@example.com", "pm-password-1")
    checked = mailet_mta(tmp_path, "check-config", str(srv.config_path))
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    with srv:
        pass
    assert srv.log_text().count("no user exists") == 1
