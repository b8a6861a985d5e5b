"""What a ``mailet-mta`` process imports: a command loads what it uses, a server the
parts its configuration has. Each check runs the real command in a fresh interpreter
and reads its ``sys.modules`` at exit (no timing: the modules are what costs)."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys

import pytest

from tests.support.server import ServerProcess, _env, base_config

# The heavy dependencies and mailet-mta's own large parts, by module-name prefix.
HEAVY = ("sqlalchemy", "alembic", "twisted", "dkim", "dns", "spf", "cryptography",
         "OpenSSL", "argon2", "yaml", "nacl", "prometheus_client", "mailets",
         "mailet_mta.config", "mailet_mta.storage.db", "mailet_mta.web", "mailet_mta.imap",
         "mailet_mta.admin", "mailet_mta.service", "mailet_mta.delivery")

# Runs mailet-mta's main with argv, then writes the module names to the file argv[1].
RUN_AND_DUMP = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from mailet_mta.cli import main
sys.exit(main(sys.argv[2:]))
"""


def command(dump, *args) -> list[str]:
    return [sys.executable, "-c", RUN_AND_DUMP, str(dump), *args]


def run(tmp_path, *args, cwd=None):
    dump = tmp_path / "modules.json"
    out = subprocess.run(command(dump, *args), capture_output=True, text=True, env=_env(),
                         cwd=cwd or tmp_path, timeout=120)
    return out, set(json.loads(dump.read_text()))


def loaded(modules: set[str], prefixes) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".")
                                            for p in prefixes))


@pytest.mark.parametrize("args", [["--help"], ["users", "--help"], ["queue", "--help"],
                                  ["webadmin", "token", "--help"], ["serve", "--help"]])
def test_help_imports_no_heavy_module(tmp_path, args):
    out, modules = run(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    assert "usage: mailet-mta" in out.stdout
    assert loaded(modules, HEAVY) == []


def test_top_level_help_still_lists_every_command(tmp_path):
    out, _modules = run(tmp_path, "--help")
    for name in ("serve", "check-config", "db", "domains", "users", "aliases", "mailbox",
                 "repository", "queue", "nodes", "init", "status", "dkim", "webadmin",
                 "tls-report"):
        assert name in out.stdout


def test_a_read_only_command_loads_neither_alembic_nor_the_servers(tmp_path):
    subprocess.run([sys.executable, "-m", "mailet_mta", "db", "upgrade"], cwd=tmp_path,
                   env=_env(), check=True, capture_output=True, timeout=120)
    subprocess.run([sys.executable, "-m", "mailet_mta", "users", "add",
                    "alice@localhost", "--password-stdin"], input="pw-alice\n", text=True,
                   cwd=tmp_path, env=_env(), check=True, capture_output=True, timeout=120)
    out, modules = run(tmp_path, "users", "list")
    assert out.returncode == 0, out.stderr
    assert "alice@localhost" in out.stdout
    assert "sqlalchemy" in modules          # it did read the database
    assert loaded(modules, ("alembic", "argon2", "dkim", "mailet_mta.web",
                            "mailet_mta.imap", "mailet_mta.delivery", "mailets")) == []


def test_a_missing_database_is_still_reported_by_a_light_command(tmp_path):
    out, modules = run(tmp_path, "queue", "list")
    assert out.returncode == 1
    assert out.stderr.startswith("mailet-mta: no database at ")
    assert loaded(modules, ("alembic",)) == []


def serve_modules(tmp_path, config) -> set[str]:
    """Start a real server with ``config`` (twice: the second finds the schema current),
    greet it over SMTP, stop it by its pid, and return what the second one imported."""
    dump = tmp_path / "modules.json"
    srv = ServerProcess(tmp_path, config)
    srv.command = command(dump, "serve", "--config", str(srv.config_path))
    for _ in range(2):
        srv.start()
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as smtp:
            assert smtp.noop()[0] == 250
        assert srv.stop() == 0
    return set(json.loads(dump.read_text()))


def test_serve_loads_only_the_configured_parts(tmp_path):
    modules = serve_modules(tmp_path, base_config(tmp_path / "var", imap=[]))
    assert "mailet_mta.smtp.server" in modules and "mailet_mta.pop3.factory" in modules
    assert loaded(modules, ("alembic", "mailet_mta.imap", "mailet_mta.web", "dkim",
                            "mailets.mailets.dkim_sign", "mailets.mailets.arc_verify")) == []


def test_serve_loads_imap_and_the_web_stack_when_configured(tmp_path):
    config = base_config(tmp_path / "var", webadmin={
        "enabled": True, "listen": "tcp:0:interface=127.0.0.1"})
    modules = serve_modules(tmp_path, config)
    assert "mailet_mta.imap.factory" in modules and "mailet_mta.web.webadmin" in modules


def test_the_migration_heads_read_from_the_scripts_are_alembics():
    from alembic.script import ScriptDirectory

    from mailet_mta.storage.migrate import MIGRATIONS, head_revisions

    assert head_revisions() == set(ScriptDirectory(str(MIGRATIONS)).get_heads())


@pytest.mark.parametrize("kind", ["mailet", "matcher"])
def test_one_standard_class_is_found_as_the_full_scan_finds_it(kind):
    from mailet_mta.spool.registry import standard_class, standard_classes

    classes = standard_classes(kind)
    assert classes
    for name, cls in classes.items():
        assert standard_class(kind, name) is cls
    assert standard_class(kind, "NoSuchClass") is None
