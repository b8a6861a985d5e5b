"""The ``tlsPolicy`` section: defaults, YAML and XML spellings, one-line errors, and
the CA file it names."""

from __future__ import annotations

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config.loader import load_config_text
from mailet_mta.tls import trust_root
from tests.support.certs import make_cert

XML = """<config><James><servernames><servername>example.com</servername></servernames>
</James><tlsPolicy><mtaSts>false</mtaSts><dane>true</dane>
<fetchTimeout>10 seconds</fetchTimeout></tlsPolicy></config>"""


def test_defaults_turn_mta_sts_and_reports_on_and_dane_off():
    policy = load_config_text("servernames: [example.com]\n", "yaml").tls_policy
    assert (policy.mta_sts, policy.dane, policy.tls_reports, policy.ca_file,
            policy.fetch_timeout) == (True, False, True, None, 30.0)


def test_yaml_turns_mta_sts_off_and_names_a_ca_file():
    policy = load_config_text("servernames: [example.com]\ntlsPolicy:\n  mtaSts: false\n"
                              "  caFile: /etc/ca.pem\n  fetchTimeout: 5s\n", "yaml").tls_policy
    assert (policy.mta_sts, policy.ca_file, policy.fetch_timeout) == (False, "/etc/ca.pem", 5.0)


def test_xml_spells_the_same_keys():
    policy = load_config_text(XML, "xml").tls_policy
    assert (policy.mta_sts, policy.dane, policy.fetch_timeout) == (False, True, 10.0)


@pytest.mark.parametrize("text, error", [
    ("tlsPolicy:\n  mtaSTS: false\n", "mtaSTS"),
    ("tlsPolicy:\n  mtaSts: maybe\n", "mtaSts"),
])
def test_bad_keys_and_values_are_one_line_errors(text, error):
    with pytest.raises(ConfigurationError, match=error) as caught:
        load_config_text("servernames: [example.com]\n" + text, "yaml")
    assert "\n" not in str(caught.value).strip()


def test_ca_file_is_read_and_checked(tmp_path):
    cert, _key = make_cert(tmp_path / "c", "mx.example.org")
    assert trust_root(str(cert)) is not None
    assert trust_root(None) is None
    with pytest.raises(ConfigurationError, match="cannot read"):
        trust_root(str(tmp_path / "missing.pem"))
    (tmp_path / "empty.pem").write_text("nothing\n")
    with pytest.raises(ConfigurationError, match="no PEM certificate"):
        trust_root(str(tmp_path / "empty.pem"))


def test_listener_arc_trusted_sealers_in_yaml_and_xml():
    cfg = load_config_text("servernames: [example.com]\nsmtpservers:\n  - listen: tcp:25\n"
                           "    dmarcReject: true\n    arcTrustedSealers: [lists.example.org,"
                           " forwarder.example.net]\n", "yaml")
    assert cfg.smtpservers[0].arc_trusted_sealers == ["lists.example.org",
                                                      "forwarder.example.net"]
    xml = XML.replace("<tlsPolicy>", "<smtpserver><listen>tcp:2525</listen>"
                      "<dmarcReject>true</dmarcReject><arcTrustedSealers>"
                      "lists.example.org, forwarder.example.net"
                      "</arcTrustedSealers></smtpserver><tlsPolicy>")
    assert load_config_text(xml, "xml").smtpservers[0].arc_trusted_sealers == [
        "lists.example.org", "forwarder.example.net"]
