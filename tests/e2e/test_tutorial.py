"""docs/writing-mailets.md works as written: its code blocks are written to the files
they name, the plugin is installed (offline, into a folder of its own), its test
passes, ``mailet-mta check-config`` accepts the configuration, and a real server with
that configuration tags a mail that is then read back over POP3."""

from __future__ import annotations

import email
import os
import poplib
import re
import smtplib
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.server import ROOT, ServerProcess, _env, base_config, wait_for

TUTORIAL = ROOT / "docs" / "writing-mailets.md"
FILE_MARK = re.compile(r"^# file: (\S+)( \(continued\))?$")


def tutorial_files(markdown: str) -> dict[str, str]:
    """path → text, from every fenced block whose first line is ``# file: PATH``;
    a block marked ``(continued)`` is appended to the file named before."""
    files: dict[str, str] = {}
    for block in re.findall(r"^```\w*\n(.*?)^```", markdown, re.S | re.M):
        first, _, body = block.partition("\n")
        mark = FILE_MARK.match(first)
        if mark is None:
            continue
        path, continued = mark.group(1), mark.group(2)
        assert continued or path not in files, f"{path} is written twice without (continued)"
        files[path] = files.get(path, "") + ("\n\n" if continued else "") + body
    return files


def test_the_tutorial_runs_as_written(tmp_path, monkeypatch):
    files = tutorial_files(TUTORIAL.read_text())
    assert {"acme-mailets/pyproject.toml", "acme-mailets/acme_mailets/tickets.py",
            "acme-mailets/tests/test_tickets.py", "mailet-mta.yaml"} <= set(files)
    for path, text in files.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (tmp_path / "acme-mailets" / "acme_mailets" / "__init__.py").write_text("")

    # §3: installed offline and fast: setuptools (the tutorial's build backend) reads
    # pyproject.toml as pip would and writes the package metadata with its entry points
    # next to the sources on the path (pip would also build a wheel; the test venv
    # has no 'wheel' package to build one with).
    site = tmp_path / "site"
    site.mkdir()
    plugin = tmp_path / "acme-mailets"
    meta = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()",
                           "-q", "egg_info", "--egg-base", str(site)],
                          capture_output=True, text=True, cwd=plugin, timeout=120)
    assert meta.returncode == 0, meta.stdout + meta.stderr
    assert (site / "acme_mailets.egg-info" / "entry_points.txt").exists()
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{plugin}")

    # §5: the plugin's own test, run by pytest as its author would.
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests"], capture_output=True, text=True, env=_env(),
                            cwd=tmp_path / "acme-mailets", timeout=300)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    # §4: the configuration, checked by the real CLI exactly as written.
    config_path = tmp_path / "mailet-mta.yaml"
    checked = subprocess.run([sys.executable, "-m", "mailet_mta", "check-config",
                              str(config_path)], capture_output=True, text=True,
                             env=_env(), cwd=tmp_path, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert "OK" in checked.stdout

    # And a real server with it: the mail arrives with its X-Ticket header.
    config = yaml.safe_load(config_path.read_text())
    listeners = base_config(tmp_path / "run" / "var")
    for key in ("storage", "smtpservers", "pop3servers"):
        config[key] = listeners[key]
    srv = ServerProcess(tmp_path / "run", config)
    srv.add_user("support@example.com", "support-pass-1")
    with srv:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            s.sendmail("c@example.org", ["support@example.com"],
                       b"Subject: Re: [ACME-42] printer\r\n\r\nhi\r\n")
        message = wait_for(lambda: _first_message(srv), timeout=30, what="the mail in POP3")
    assert email.message_from_bytes(message)["X-Ticket"] == "42"


def _first_message(srv) -> bytes | None:
    box = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    try:
        box.user("support@example.com")
        box.pass_("support-pass-1")
        if box.stat()[0] == 0:
            return None
        return b"\r\n".join(box.retr(1)[1])
    finally:
        box.quit()


def test_every_tutorial_block_that_names_a_file_is_used():
    """A block marked ``# file:`` with a path outside the layout would be silently skipped."""
    files = tutorial_files(TUTORIAL.read_text())
    layout = TUTORIAL.read_text().split("```\nacme-mailets/")[1].split("```")[0]
    for path in files:
        assert Path(path).name in layout, path
