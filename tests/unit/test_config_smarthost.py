"""The ``smarthost`` key: one relay host for all outbound mail, in YAML and in XML, and
where its password goes (the configuration, never the queue)."""

from __future__ import annotations

import pytest

from mailet_mta.api import ATTR_SMARTHOST, ConfigurationError
from mailet_mta.config import load_config_text
from mailet_mta.delivery.credentials import RelayCredentials, smarthost_route

YAML = """\
servernames: [example.com]
smarthost:
  host: relay.example.net:587, [2001:db8::25]
  username: mailer
  password: "s3cret pass"
"""

XML = """\
<config>
  <James><servernames><servername>example.com</servername></servernames></James>
  <smarthost>
    <host>relay.example.net:587, [2001:db8::25]</host>
    <username>mailer</username>
    <password>s3cret pass</password>
  </smarthost>
</config>
"""


@pytest.mark.parametrize("text, fmt", [(YAML, "yaml"), (XML, "xml")])
def test_smarthost_reads_the_same_from_yaml_and_xml(text, fmt):
    cfg = load_config_text(text, fmt)
    assert cfg.smarthost.hosts == ["relay.example.net:587", "[2001:db8::25]"]
    assert cfg.smarthost.username == "mailer" and cfg.smarthost.password == "s3cret pass"
    assert smarthost_route(cfg) == {"gateways": [["relay.example.net", 587],
                                                 ["2001:db8::25", 25]],
                                    "username": "mailer"}
    table = RelayCredentials.from_config(cfg)
    assert table.password("relay.example.net", 587, "mailer") == "s3cret pass"
    assert table.password("2001:db8::25", 25, "mailer") == "s3cret pass"
    assert table.password("relay.example.net", 25, "mailer") is None


def test_without_smarthost_mail_goes_to_the_mx_and_no_password_is_known():
    cfg = load_config_text("servernames: [example.com]\n", "yaml")
    assert cfg.smarthost is None and smarthost_route(cfg) is None
    assert len(RelayCredentials.from_config(cfg)) == 0


def test_the_mailet_context_tells_mailets_the_route_but_not_the_password(tmp_path):
    from mailet_mta.context import MailetContext

    cfg = load_config_text(YAML, "yaml")
    ctx = MailetContext(cfg, directory=None, blobs=None)
    route = ctx.get_attribute(ATTR_SMARTHOST)
    assert route["username"] == "mailer" and "s3cret" not in repr(route)


def test_remote_delivery_gateway_passwords_are_found_in_the_pipeline():
    cfg = load_config_text("""\
servernames: [example.com]
spoolmanager:
  processors:
    root: [{match: All, class: RemoteDelivery, parameters: {gateway: "gw.example:2525",
            gatewayUsername: u1, gatewayPassword: p1}}]
    error: [{match: All, class: Null}]
""", "yaml")
    assert RelayCredentials.from_config(cfg).password("GW.example", 2525, "u1") == "p1"


@pytest.mark.parametrize("body, message", [
    ("smarthost: {username: u, password: p}", "smarthost needs host"),
    ("smarthost: {host: relay.example.net, username: u}", "has username but no password"),
    ("smarthost: {host: relay.example.net, password: p}", "has password but no username"),
    ("smarthost: {host: 'relay.example.net:smtp'}", "port that is not a number"),
    ("smarthost: {host: relay.example.net, prot: 587}", "did you mean 'port'"),
])
def test_a_wrong_smarthost_names_the_key_and_the_line(body, message):
    with pytest.raises(ConfigurationError) as err:
        load_config_text("servernames: [example.com]\n" + body + "\n", "yaml")
    assert message in str(err.value)
    assert ":2" in str(err.value)


def test_check_config_builds_remote_delivery_with_the_smarthost():
    from mailet_mta.cli.check_config import _CheckContext
    from mailet_mta.spool.processor import Pipeline

    cfg = load_config_text(YAML + """\
spoolmanager:
  processors:
    root: [{match: All, class: RemoteDelivery, parameters: {bounceProcessor: error}}]
    error: [{match: All, class: Null}]
""", "yaml")
    pipeline = Pipeline(cfg.spoolmanager, _CheckContext(cfg))
    try:
        mailet = next(m for m in _mailets(pipeline) if type(m).__name__ == "RemoteDelivery")
        assert mailet.options["gateways"][0] == ["relay.example.net", 587]
        assert mailet.options["gatewayUsername"] == "mailer"
    finally:
        pipeline.destroy()


def _mailets(pipeline):
    for processor in pipeline.processors.values():
        for pair in processor.pairs:
            yield pair.mailet
