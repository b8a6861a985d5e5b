"""The metrics section of the configuration, and init's YAML and XML describing one server."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from mailet_mta import metrics
from mailet_mta.api import ConfigurationError
from mailet_mta.cli.init_templates import render_xml, render_yaml, standard_pipeline
from mailet_mta.config import load_config_text

PIPELINE = ("spoolmanager: {processors: {root: [{match: All, class: Null}], "
            "error: [{match: All, class: Null}]}}\n")


def test_metrics_are_off_unless_a_listen_endpoint_is_configured():
    config = load_config_text("servernames: [example.com]\n" + PIPELINE, "yaml")
    assert "metrics" not in config.extra
    assert metrics.metrics_service(config, SimpleNamespace(config=config)) is None


def test_metrics_listen_is_read_from_yaml_and_xml():
    yaml_cfg = load_config_text("metrics: {listen: 'tcp:9464:interface=127.0.0.1'}\n"
                                + PIPELINE, "yaml")
    xml_cfg = load_config_text(
        "<config><metrics><listen>tcp:9464:interface=127.0.0.1</listen></metrics>"
        "<spoolmanager><processor name='root'><mailet match='All' class='Null'/>"
        "</processor><processor name='error'><mailet match='All' class='Null'/>"
        "</processor></spoolmanager></config>", "xml")
    assert yaml_cfg.extra["metrics"].listen == xml_cfg.extra["metrics"].listen \
        == "tcp:9464:interface=127.0.0.1"


def test_an_unknown_metrics_key_names_the_line_and_the_known_key():
    with pytest.raises(ConfigurationError) as err:
        load_config_text(PIPELINE + "metrics:\n  lsten: tcp:9464\n", "yaml", "m.yaml")
    assert str(err.value).startswith("m.yaml:3:") and "did you mean 'listen'" in str(err.value)


def test_a_bad_metrics_endpoint_is_a_configuration_error():
    config = load_config_text("metrics: {listen: 'nonsense:1'}\n" + PIPELINE, "yaml")
    with pytest.raises(ConfigurationError, match="metrics.listen"):
        metrics.metrics_service(config, SimpleNamespace(config=config))


def test_refusing_replies_are_counted_by_reason_and_others_are_not():
    def value(**labels):
        return metrics.REGISTRY.get_sample_value("mailet_mta_smtp_rejected_total", labels) or 0

    before = value(reason="unknown_user", code="550")
    metrics.smtp_reply(550, "5.1.1")
    metrics.smtp_reply(250, "2.1.5")
    assert value(reason="unknown_user", code="550") == before + 1
    assert value(reason="other", code="250") == 0


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize("production", [False, True])
def test_init_yaml_and_xml_describe_the_same_server(remote, production):
    ports = {"smtp": 25, "submission": 587, "submissions": 465, "pop3": 110, "pop3s": 995,
             "imap": 143, "imaps": 993}
    settings = {"domain": "example.com", "hostname": "mail.example.com",
                "config_path": "/etc/m.yaml", "data_dir": "/var/lib/m",
                "certificate": "/etc/c.pem", "private_key": "/etc/k.pem", "ports": ports,
                "interface": None if production else "127.0.0.1",
                "production": production, "pipeline": standard_pipeline(remote)}
    from_yaml = load_config_text(render_yaml(settings), "yaml")
    from_xml = load_config_text(render_xml(settings), "xml")
    assert _plain(from_yaml) == _plain(from_xml)
    assert from_yaml.smtpservers[0].tls.certificate == "/etc/c.pem"
    assert [s.require_ssl for s in from_yaml.imapservers][0] is production
    assert [s.require_ssl for s in from_yaml.pop3servers][0] is production


def _plain(config):
    data = dataclasses.asdict(config)

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("source", "path")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(data)
