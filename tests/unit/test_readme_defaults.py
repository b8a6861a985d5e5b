"""The README's first paragraph names the embedded default's listeners: every
address it names is one the embedded default listens on, and every loopback
listener of the default is named."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _default_ports() -> set[int]:
    config = yaml.safe_load((ROOT / "mailet_mta" / "config" / "defaults" /
                             "default.yaml").read_text())
    ports = set()
    for section in ("smtpservers", "pop3servers", "imapservers"):
        for listener in config.get(section) or []:
            match = re.match(r"tcp:(\d+):interface=127\.0\.0\.1$", listener["listen"])
            assert match, listener["listen"]
            ports.add(int(match.group(1)))
    return ports


def test_the_readme_names_the_embedded_default_listeners():
    intro = (ROOT / "README.md").read_text().split("```", 1)[0]
    named = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", intro)}
    assert named == _default_ports()
