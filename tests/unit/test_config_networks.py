"""authorizedAddresses: a network written with host bits set is a configuration error.

``192.0.2.7/0`` used to be widened to ``0.0.0.0/0`` — every client on the Internet
allowed to relay. ``check-config`` now refuses it with one line naming the file, the
line and the entry, in YAML and in James-style XML.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.cli import main
from mailet_mta.config import load_config

CONF = Path(__file__).resolve().parents[2] / "conf"


def check_config(path, capsys) -> tuple[int, list[str]]:
    code = main(["check-config", str(path)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def shipped(tmp_path, name: str, old: str, new: str) -> Path:
    text = (CONF / name).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1)
                if needle in line)


@pytest.mark.parametrize("entry,meaning", [("192.0.2.7/0", "0.0.0.0/0"),
                                           ("10.1.2.3/8", "10.0.0.0/8"),
                                           ("10.1.2.3/255.0.0.0", "10.0.0.0/8"),
                                           ("2001:db8::1/32", "2001:db8::/32")])
def test_yaml_network_with_host_bits_is_an_error_naming_file_line_and_entry(
        tmp_path, capsys, entry, meaning):
    path = shipped(tmp_path, "mailet-mta.yaml", 'authorizedAddresses: [127.0.0.0/8, "::1"]',
                   f'authorizedAddresses:\n      - 127.0.0.0/8\n      - "{entry}"')
    code, lines = check_config(path, capsys)
    assert code != 0 and len(lines) == 1, lines
    line = lines[0]
    assert f"{path}:{line_of(path, entry)}:" in line, line
    assert entry in line and "authorizedAddresses" in line and meaning in line, line
    assert "host bits" in line


def test_xml_network_with_host_bits_is_an_error_naming_file_line_and_entry(
        tmp_path, capsys):
    path = shipped(tmp_path, "config.xml", "<authorizedAddresses>127.0.0.1<",
                   "<authorizedAddresses>127.0.0.1, 192.0.2.7/0<")
    code, lines = check_config(path, capsys)
    assert code != 0 and len(lines) == 1, lines
    assert f"{path}:{line_of(path, '192.0.2.7/0')}:" in lines[0], lines
    assert "'192.0.2.7/0'" in lines[0] and "0.0.0.0/0" in lines[0]


def test_networks_without_host_bits_still_load(tmp_path):
    path = shipped(tmp_path, "mailet-mta.yaml", 'authorizedAddresses: [127.0.0.0/8, "::1"]',
                   'authorizedAddresses: [127.0.0.0/8, "::1", 10.0.0.0/255.0.0.0, '
                   '192.0.2.7, 192.0.2.7/32, 10.0.*, 0.0.0.0/0]')
    config = load_config(str(path))
    assert "0.0.0.0/0" in config.smtpservers[0].authorized_addresses
    bad = shipped(tmp_path, "mailet-mta.yaml", 'authorizedAddresses: [127.0.0.0/8, "::1"]',
                  'authorizedAddresses: [127.0.0.1/8]')
    with pytest.raises(ConfigurationError, match="host bits"):
        load_config(str(bad))
