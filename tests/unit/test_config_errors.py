"""Every error of a configuration file in one report, each at its ``file:line``."""

from __future__ import annotations

import textwrap

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config import load_config_text
from mailet_mta.config.tree import ConfigurationErrors
from mailet_mta.spool.processor import Pipeline
from mailet_mta.testing import FakeMailContext

BROKEN_YAML = textwrap.dedent("""\
    servernames: [example.com]
    postmastr: postmaster@example.com
    smtpservers:
      - listen: tcp:2600
        maxmessagesize: ten megabytes
      - listen: tcp:2601
        authRequired: sometimes
    spoolmanager:
      threads: many
      processors:
        root:
          - {match: All, class: ToProcessor, parameters: {processor: trasport}}
          - {match: All}
        error: [{class: Null}]
    """)


def test_every_error_of_a_yaml_file_is_reported_in_one_run():
    with pytest.raises(ConfigurationErrors) as info:
        load_config_text(BROKEN_YAML, "yaml", "broken.yaml")
    lines = [str(e) for e in info.value.errors]
    assert [line.split(": ", 1)[0] for line in lines] == [
        "broken.yaml:2", "broken.yaml:5", "broken.yaml:7", "broken.yaml:9",
        "broken.yaml:13", "broken.yaml:12"]
    assert "unknown key 'postmastr'" in lines[0] and "did you mean 'postmaster'" in lines[0]
    assert "maxmessagesize must be a size" in lines[1]
    assert "authRequired must be true, false or announce" in lines[2]
    assert "threads must be a whole number" in lines[3]
    assert "needs class" in lines[4]
    assert "names processor 'trasport'" in lines[5]
    assert str(info.value).splitlines() == lines


def test_one_error_is_raised_as_itself():
    with pytest.raises(ConfigurationError) as info:
        load_config_text("servernames: [example.com]\npostmastr: x@example.com\n", "yaml",
                         "one.yaml")
    assert type(info.value) is ConfigurationError and info.value.source == "one.yaml:2"


def test_every_error_of_an_xml_file_is_reported_in_one_run():
    text = textwrap.dedent("""\
        <config>
          <smtpserver><port>99999</port></smtpserver>
          <spoolmanager>
            <threads>0</threads>
            <processor name="root">
              <mailet match="All" class="ToProcessor"/>
            </processor>
          </spoolmanager>
        </config>
        """)
    with pytest.raises(ConfigurationErrors) as info:
        load_config_text(text, "xml", "broken.xml")
    sources = [e.source for e in info.value.errors]
    assert sources == ["broken.xml:4", "broken.xml:2", "broken.xml:3", "broken.xml:6"]
    assert "no 'error' processor" in info.value.errors[2].message


def test_a_missing_required_processor_is_not_reported_when_the_processors_failed():
    """The error that follows only from another one is left out."""
    with pytest.raises(ConfigurationError) as info:
        load_config_text("spoolmanager:\n  processors: [root]\n", "yaml", "p.yaml")
    assert type(info.value) is ConfigurationError
    assert "must be a block of keys" in info.value.message


def test_pipeline_reports_every_unknown_class_at_once():
    config = load_config_text(textwrap.dedent("""\
        spoolmanager:
          processors:
            root:
              - {match: NoSuchMatcher, class: NoSuchMailet}
              - {match: All, class: LocalDelivery}
              - {match: All, class: AlsoMissing}
            error: [{class: Null}]
        """), "yaml", "p.yaml")
    with pytest.raises(ConfigurationErrors) as info:
        Pipeline(config.spoolmanager, FakeMailContext())
    found = [(e.source, e.message.split(" ", 2)[:2]) for e in info.value.errors]
    assert found == [("p.yaml:4", ["unknown", "matcher"]), ("p.yaml:4", ["unknown", "mailet"]),
                     ("p.yaml:6", ["unknown", "mailet"])]


def test_the_report_keeps_a_bounded_number_of_errors_and_counts_the_rest():
    from mailet_mta.config.tree import MAX_ERRORS

    text = "".join(f"typo{i}: 1\n" for i in range(MAX_ERRORS + 20))
    with pytest.raises(ConfigurationErrors) as info:
        load_config_text(text, "yaml", "many.yaml")
    errors = info.value.errors
    assert len(errors) == MAX_ERRORS + 1
    assert errors[MAX_ERRORS - 1].source == f"many.yaml:{MAX_ERRORS}"
    assert str(errors[-1]) == "many.yaml: 20 more errors not shown; fix these first"


@pytest.mark.parametrize("name", ["mailet-mta.yaml", "config.xml", "examples/james3"])
def test_shipped_configurations_load_without_unit_warnings(name):
    from pathlib import Path

    from mailet_mta.config import default_config, load_config

    conf = Path(__file__).resolve().parents[2] / "conf"
    assert load_config(conf / name).warnings == []
    assert default_config().warnings == []
