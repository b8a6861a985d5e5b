"""twistd finds the mailet-mta plugin after a plain install and after an editable one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.server import ROOT

BIN = Path(sys.executable).parent


def twistd_help(env=None, cwd="/") -> str:
    out = subprocess.run([str(BIN / "twistd"), "--help"], capture_output=True, text=True,
                         env=env, cwd=cwd, timeout=120)
    return out.stdout + out.stderr


def test_editable_install_exposes_the_twistd_plugin():
    # The README installs with editable_mode=strict; from a neutral working directory.
    assert "mailet-mta" in twistd_help()


def _checkout_state() -> dict[str, int]:
    """Each top-level entry of the checkout with its modification time."""
    return {p.name: p.stat().st_mtime_ns for p in ROOT.iterdir()}


def _source_copy(tmp_path) -> Path:
    """The checkout's files without what a build or a run made (the built C module
    included)."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        "var", "*.so"))
    return source


def test_plain_install_exposes_the_twistd_plugin_without_touching_twisted(tmp_path):
    # `pip install DIR` builds inside DIR (build/, *.egg-info): build from a copy, so
    # the checkout is left as it was.
    source = _source_copy(tmp_path)
    before = _checkout_state()
    target = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                            "--target", str(target), str(source)], capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    assert _checkout_state() == before
    plugin_dir = target / "twisted" / "plugins"
    assert (plugin_dir / "mailet_mta_plugin.py").exists()
    # Installing must never ship an __init__.py that would replace Twisted's own.
    assert not (plugin_dir / "__init__.py").exists()
    assert not (target / "twisted" / "__init__.py").exists()
    # -S: no .pth files, so the editable install of this checkout is out of sight and
    # only the plain install in `target` can provide the plugin.
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = dict(os.environ, PYTHONPATH=f"{target}{os.pathsep}{site}")
    out = subprocess.run([sys.executable, "-S", "-c",
                          "import sys; sys.argv = ['twistd', '--help']\n"
                          "import mailet_mta, twisted.plugins.mailet_mta_plugin as p\n"
                          "print(mailet_mta.__file__, p.__file__)\n"
                          "from twisted.scripts.twistd import run; run()"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    first = out.stdout.splitlines()[0]
    assert first.startswith(str(target)) and first.split()[1].startswith(str(target)), out.stdout
    assert "mailet-mta" in out.stdout, out.stderr


def test_without_a_c_compiler_both_installs_succeed_with_the_python_scans(tmp_path):
    """The C scans are optional: with no working compiler (CC=/bin/false) a plain and
    an editable install both succeed, and the server reads DATA with the Python ones."""
    source = _source_copy(tmp_path)
    env = dict(os.environ, CC="/bin/false")
    target = tmp_path / "site"
    plain = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                            "--target", str(target), str(source)], capture_output=True,
                           text=True, env=env, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert not list(target.rglob("_line_scan*.so"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    editable = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                               "--no-deps", "-e", str(source), "--config-settings",
                               "editable_mode=strict"], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=300)
    assert editable.returncode == 0, editable.stderr[-2000:]
    check = ("from mailet_mta.smtp import data_reader as d\n"
             "out = []\n"
             "r = d.DotDataReader(out.append)\n"
             "rest = r.feed(b'Subject: x\\r\\n\\r\\n..dot\\r\\n.\\r\\nQUIT\\r\\n')\n"
             "print(d.C_SCANS, d.__file__, b''.join(out), rest, r.bare_line_end)\n")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    # The plain install: -S keeps this checkout's editable install out of sight. The
    # editable one: its own finder provides mailet_mta, this environment the rest.
    for python, flags, path in ((sys.executable, ["-S"], f"{target}{os.pathsep}{site}"),
                                (str(venv / "bin" / "python"), [], site)):
        out = subprocess.run([python, *flags, "-c", check], capture_output=True, text=True,
                             cwd=tmp_path, timeout=120, env=dict(os.environ, PYTHONPATH=path))
        assert out.returncode == 0, out.stderr[-2000:]
        c_scans, path, *result = out.stdout.split(" ", 2)
        assert c_scans == "False" and path.startswith(str(tmp_path)), out.stdout + out.stderr
        assert result == ["b'Subject: x\\r\\n\\r\\n.dot\\r\\n' b'QUIT\\r\\n' False\n"], out.stdout
