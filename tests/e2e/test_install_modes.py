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


def test_plain_install_exposes_the_twistd_plugin_without_touching_twisted(tmp_path):
    # `pip install DIR` builds inside DIR (build/, *.egg-info): build from a copy, so
    # the checkout is left as it was.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        "var"))
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
