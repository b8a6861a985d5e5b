"""The shipped configurations carry the DKIM, SPF, ARC, DMARC and SRS lines commented out: a
server without keys starts as before, and once uncommented the lines are valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.cli.check_config import _CheckContext
from mailet_mta.config import load_config
from mailet_mta.spool.processor import Pipeline
from mailets.dkim_keys import generate_key

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["mailet_mta/config/defaults/default.yaml", "conf/mailet-mta.yaml",
           "conf/config.xml"]
KEY_PATH = "/var/lib/mailet-mta/dkim/example.com.mail.key"
ARC_KEY_PATH = "/var/lib/mailet-mta/dkim/example.com.arc.key"
SRS_SECRET_PATH = "/etc/mailet-mta/srs.secret"
YAML_LINE = re.compile(r"^(\s*)# ((?:matchers:|  from-outside:|    match: Not|"
                       r"    matchers: \[|- \{match|   parameters: ).*)$")


def uncommented(path: Path) -> str:
    text = path.read_text()
    if path.suffix == ".xml":
        # the two commented blocks that start with the pointer to the documentation
        return re.sub(r"<!-- (?:Checked|Signed|Forwarded) mail \(docs/authentication\.md"
                      r"(?:, \"SRS\")?\).*?\n(.*?)-->",
                      lambda m: m.group(1), text, flags=re.S)
    return "\n".join(YAML_LINE.sub(r"\1\2", line) for line in text.splitlines()) + "\n"


def build_pipeline(path: Path) -> Pipeline:
    """The pipeline of the file at ``path``, built as start-up builds it."""
    config = load_config(path)
    return Pipeline(config.spoolmanager, _CheckContext(config))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configuration_has_authentication_off(name):
    text = (ROOT / name).read_text()
    assert "DKIMSign" in text and "DKIMVerify" in text
    build_pipeline(ROOT / name)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_authentication_lines_are_valid_once_uncommented(name, tmp_path):
    key = tmp_path / "k.key"
    key.write_bytes(generate_key().private)
    arc_key = tmp_path / "arc.key"
    arc_key.write_bytes(generate_key("rsa").private)
    srs_secret = tmp_path / "srs.secret"
    srs_secret.write_text("a-secret-of-at-least-16-chars\n")
    text = uncommented(ROOT / name).replace(KEY_PATH, str(key)).replace(
        ARC_KEY_PATH, str(arc_key)).replace(SRS_SECRET_PATH, str(srs_secret))
    assert "# - {match: from-outside" not in text and "class=\"DKIMVerify\"/>\n      -->" \
        not in text
    path = tmp_path / Path(name).name
    path.write_text(text)
    pipeline = build_pipeline(path)
    names = {type(pair.mailet).__name__ for processor in pipeline.processors.values()
             for pair in processor.pairs}
    assert {"DKIMVerify", "SPF", "ARCVerify", "DMARC", "DKIMSign", "ARCSeal", "SRS"} <= names
    broken = tmp_path / ("broken" + path.suffix)
    broken.write_text(text.replace(str(key), str(tmp_path / "missing.key")))
    with pytest.raises(ConfigurationError, match="missing.key"):
        build_pipeline(broken)
    no_secret = tmp_path / ("no-secret" + path.suffix)
    no_secret.write_text(text.replace(str(srs_secret), str(tmp_path / "missing.secret")))
    with pytest.raises(ConfigurationError, match="missing.secret"):
        build_pipeline(no_secret)
