"""imapservers in YAML, <imapserver> in XML and James 3's imapserver.xml."""

from __future__ import annotations

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config import load_config_text


def _yaml(text: str):
    return load_config_text(text, "yaml", "test.yaml")


def test_yaml_imapservers_take_the_listener_keys(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    config = _yaml(f"""
imapservers:
  - name: imap
    bind: 127.0.0.1
    port: 1143
    connectionLimit: 10
    connectionLimitPerIP: 3
    connectiontimeout: 30 minutes
    enableIdle: false
    idleTimeInterval: 60s
    literalSizeLimit: 10m
    plainAuthDisallowed: true
    tls: {{certificate: {cert}, privateKey: {cert}}}
""")
    imap = config.imapservers[0]
    assert imap.listen == "tcp:1143:interface=127.0.0.1"
    assert (imap.connection_limit, imap.connection_limit_per_ip) == (10, 3)
    assert imap.connection_timeout == 1800
    assert imap.enable_idle is False and imap.idle_keepalive == 60
    assert imap.max_message_size == 10 * 1024 * 1024
    assert imap.require_ssl is True


def test_yaml_imap_require_ssl_without_tls_is_one_clear_error():
    with pytest.raises(ConfigurationError) as err:
        _yaml("imapservers:\n  - name: imap\n    port: 1143\n    requireSSL: true\n")
    assert "tls" in str(err.value)


def test_xml_imapserver_element():
    config = load_config_text("""<config>
  <imapserver enabled="true">
    <bind>127.0.0.1</bind><port>1143</port>
    <connectionLimitPerIP>5</connectionLimitPerIP>
    <enableIdle>true</enableIdle>
  </imapserver>
</config>""", "xml", "config.xml")
    assert config.imapservers[0].listen == "tcp:1143:interface=127.0.0.1"
    assert config.imapservers[0].connection_limit_per_ip == 5


def test_james3_imapserver_xml():
    config = load_config_text("""<imapservers>
  <imapserver enabled="true">
    <jmxName>imapserver</jmxName>
    <bind>0.0.0.0:1143</bind>
    <connectionBacklog>200</connectionBacklog>
    <tls socketTLS="false" startTLS="false"/>
    <connectionLimit>0</connectionLimit>
    <connectionLimitPerIP>0</connectionLimitPerIP>
    <idleTimeInterval>120</idleTimeInterval>
    <idleTimeIntervalUnit>SECONDS</idleTimeIntervalUnit>
    <enableIdle>true</enableIdle>
    <plainAuthDisallowed>false</plainAuthDisallowed>
  </imapserver>
</imapservers>""", "xml", "imapserver.xml")
    imap = config.imapservers[0]
    assert imap.listen == "tcp:1143"
    assert imap.idle_keepalive == 120 and not imap.require_ssl


def test_unknown_idle_unit_is_refused():
    with pytest.raises(ConfigurationError) as err:
        _yaml("imapservers:\n  - name: imap\n    port: 1143\n    idleTimeIntervalUnit: MINUTES\n")
    assert "idleTimeIntervalUnit" in str(err.value)
