"""docs/configuration.md is generated from the config model: stale means a test fails,
and every example in it loads through the real YAML and XML loaders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mailet_mta import docs_gen
from mailet_mta.config import load_config_text

ROOT = Path(__file__).resolve().parents[2]
PROCESSORS = {"root": [{"match": "All", "class": "Null"}],
              "error": [{"match": "All", "class": "Null"}]}
XML_PROCESSORS = ('<processor name="root"><mailet match="All" class="Null"/></processor>'
                  '<processor name="error"><mailet match="All" class="Null"/></processor>')
WITH_EXAMPLES = [s for s in docs_gen.SECTIONS if s.examples]


def test_configuration_reference_is_up_to_date():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == docs_gen.render(), (
        "docs/configuration.md is stale: run "
        "`python -m mailet_mta.docs_gen > docs/configuration.md`")


def test_every_model_field_a_key_can_set_is_documented():
    text = docs_gen.render()
    for section in docs_gen.SECTIONS:
        for key in section.table:
            assert f"`{key}`" in text, (section.title, key)


@pytest.mark.parametrize("section", WITH_EXAMPLES, ids=lambda s: s.title.split()[0])
def test_yaml_example_loads(section):
    data = yaml.safe_load(docs_gen.example_yaml(section))
    data.setdefault("spoolmanager", {})["processors"] = PROCESSORS
    config = load_config_text(yaml.safe_dump(data), "yaml")
    assert config.warnings == [], "a documented example must load without warnings"


@pytest.mark.parametrize("section", WITH_EXAMPLES, ids=lambda s: s.title.split()[0])
def test_xml_example_loads_to_the_same_model_as_yaml(section):
    text = docs_gen.example_xml(section)
    if "<spoolmanager>" in text:
        text = text.replace("</spoolmanager>", XML_PROCESSORS + "</spoolmanager>")
    else:
        text = text.replace("</config>", f"<spoolmanager>{XML_PROCESSORS}</spoolmanager>"
                                         "</config>")
    from_xml = load_config_text(text, "xml")
    data = yaml.safe_load(docs_gen.example_yaml(section))
    data.setdefault("spoolmanager", {})["processors"] = PROCESSORS
    from_yaml = load_config_text(yaml.safe_dump(data), "yaml")
    for name in ("servernames", "postmaster", "storage", "dns", "logging"):
        assert _strip(getattr(from_xml, name)) == _strip(getattr(from_yaml, name))
    assert _strip(from_xml.smtpservers) == _strip(from_yaml.smtpservers)
    assert _strip(from_xml.pop3servers) == _strip(from_yaml.pop3servers)
    assert _strip(from_xml.extra) == _strip(from_yaml.extra)


def _strip(value):
    import dataclasses

    if dataclasses.is_dataclass(value):
        return {k: _strip(v) for k, v in dataclasses.asdict(value).items()
                if k != "source"}
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "source"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
