"""James-style XML configuration: conf/config.xml, the dialect, refused XML, and that
XML and YAML describe the same model."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config import default_config, load_config, load_config_text

CONF = Path(__file__).resolve().parents[2] / "conf"
CONFIG_XML = CONF / "config.xml"

PIPELINE = """
  <spoolmanager>
    <processor name="root"><mailet match="All" class="Null"/></processor>
    <processor name="error"><mailet match="All" class="Null"/></processor>
  </spoolmanager>"""


def without_sources(obj):
    """The model with every ``source`` and ``path`` cleared, for comparing formats."""
    if dataclasses.is_dataclass(obj):
        changes = {f.name: None if f.name in ("source", "path")
                   else without_sources(getattr(obj, f.name))
                   for f in dataclasses.fields(obj)}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, dict):
        return {k: without_sources(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [without_sources(v) for v in obj]
    return obj


def load(body: str, pipeline: bool = True):
    text = f"<config>{body}{PIPELINE if pipeline else ''}\n</config>"
    return load_config_text(text, "xml", "test.xml")


def error_of(text: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        load_config_text(text, "xml", "test.xml")
    return info.value


# -- conf/config.xml -------------------------------------------------------------
def test_config_xml_has_the_james2_smtp_settings():
    config = load_config(CONFIG_XML)
    assert config.path == str(CONFIG_XML)
    assert config.servernames == ["localhost"]
    assert config.postmaster == "postmaster@localhost"
    (smtp,) = config.smtpservers
    assert smtp.listen == "tcp:25"
    assert smtp.authorized_addresses == ["127.0.0.1"]
    assert smtp.auth_required == "false" and smtp.verify_identity == "false"
    assert smtp.max_message_size == 0 and smtp.helo_name is None
    (pop3,) = config.pop3servers
    assert pop3.listen == "tcp:110" and pop3.require_ssl is False


def test_config_xml_root_refuses_relay_for_remote_recipients_from_outside():
    root = load_config(CONFIG_XML).spoolmanager.processors["root"]
    guard = root.mailets[1]
    assert (guard.match.name, guard.mailet) == ("remote-rcpt-from-outside", "ToProcessor")
    assert guard.parameters["processor"] == "relay-denied"
    composite = root.matchers["remote-rcpt-from-outside"]
    assert composite.name == "And"
    not_local, outside = composite.children
    assert (not_local.name, [c.name for c in not_local.children]) == ("Not", ["HostIsLocal"])
    assert (outside.name, outside.condition) == ("RemoteAddrNotInNetwork", "127.0.0.1")


def _documented_xml_differences_removed(config):
    """conf/config.xml's pipeline minus the anti-relay guard it adds to root."""
    processors = copy.deepcopy(config.spoolmanager.processors)
    root = processors["root"]
    del root.matchers["remote-rcpt-from-outside"]
    root.mailets = [m for m in root.mailets
                    if not (m.match and m.match.name == "remote-rcpt-from-outside")]
    return processors


def test_config_xml_pipeline_equals_the_yaml_pipeline_apart_from_the_relay_guard():
    xml = load_config(CONFIG_XML)
    yaml = load_config(CONF / "mailet-mta.yaml")
    assert without_sources(_documented_xml_differences_removed(xml)) == \
        without_sources(yaml.spoolmanager.processors)


def test_shipped_yaml_pipeline_equals_the_embedded_default():
    shipped = load_config(CONF / "mailet-mta.yaml").spoolmanager.processors
    assert without_sources(shipped) == without_sources(
        default_config().spoolmanager.processors)


def test_config_xml_equals_the_default_apart_from_documented_differences():
    """Differences: the root relay guard, 10 spool threads (James 2), an explicit
    postmaster, and the listeners (James 2's port 25 / 110 / 143 instead of
    2525/5870/1110/1143)."""
    xml, default = load_config(CONFIG_XML), default_config()
    assert xml.postmaster_address == default.postmaster_address
    assert xml.spoolmanager.threads == 10
    xml.spoolmanager.processors = _documented_xml_differences_removed(xml)
    xml.spoolmanager.threads = default.spoolmanager.threads
    for config in (xml, default):
        config.postmaster = None
        config.smtpservers = config.pop3servers = config.imapservers = []
        config.path = None
    assert without_sources(xml) == without_sources(default)


def five_step_edit(text: str) -> str:
    """The documented SMTP AUTH procedure, done literally on conf/config.xml's text."""
    element = re.compile(r'^\s*<mailet match="remote-rcpt-from-outside".*?</mailet>\n',
                         re.M | re.S)
    text, deleted = element.subn("", text)
    assert deleted == 1
    text = text.replace("<authRequired>false</authRequired>",
                        "<authRequired>true</authRequired>")
    text = text.replace("<verifyIdentity>false</verifyIdentity>",
                        "<verifyIdentity>true</verifyIdentity>")
    return text.replace("<servername>localhost</servername>",
                        "<servername>localhost</servername>\n"
                        "      <servername>example.com</servername>")


def test_five_step_smtp_auth_edit_of_config_xml_loads_with_the_new_values():
    config = load_config_text(five_step_edit(CONFIG_XML.read_text()), "xml", "edited.xml")
    assert config.servernames == ["localhost", "example.com"]
    (smtp,) = config.smtpservers
    assert smtp.auth_required == "true" and smtp.verify_identity == "strict"
    root = config.spoolmanager.processors["root"]
    assert [(m.match.name, m.mailet) for m in root.mailets] == [
        ("All", "PostmasterAlias"), ("RelayLimit", "ToRepository"), ("All", "ToProcessor")]


# -- the dialect ----------------------------------------------------------------
def test_mailet_child_elements_are_parameters_and_repeated_names_are_comma_joined():
    config = load_config_text("""<config><spoolmanager>
      <processor name="root">
        <mailet match="HasHeader=X-Tag=a" class="SetMimeHeader">
          <name>X-Seen</name>
          <value> yes </value>
          <recipient>a@example.com</recipient>
          <recipient>b@example.com</recipient>
          <onMailetException>ignore</onMailetException>
          <onMatchException>nomatch</onMatchException>
        </mailet>
        <mailet class="Null"/>
      </processor>
      <processor state="error"><mailet match="All" class="Null"/></processor>
    </spoolmanager></config>""", "xml", "t.xml")
    first, second = config.spoolmanager.processors["root"].mailets
    assert first.parameters == {"name": "X-Seen", "value": "yes",
                                "recipient": "a@example.com,b@example.com"}
    assert (first.on_mailet_exception, first.on_match_exception) == ("ignore", "nomatch")
    assert (first.match.name, first.match.condition) == ("HasHeader", "X-Tag=a")
    assert second.match is None and second.parameters == {}
    assert first.source == "t.xml:3"


def test_notmatch_and_named_composite_reference():
    config = load_config_text("""<config><spoolmanager>
      <processor name="root">
        <matcher name="inner" match="Or"><matcher match="All"/></matcher>
        <matcher name="outer" match="Not"><matcher match="inner"/></matcher>
        <mailet notmatch="outer" class="Null"/>
      </processor>
      <processor name="error"><mailet match="All" class="Null"/></processor>
    </spoolmanager></config>""", "xml", "t.xml")
    root = config.spoolmanager.processors["root"]
    (mailet,) = root.mailets
    assert mailet.notmatch and mailet.match.name == "outer" and not mailet.match.children
    assert root.matchers["outer"].children[0].name == "inner"
    assert root.matchers["inner"].source == "t.xml:3"


def test_settings_work_directly_in_smtpserver_and_in_its_handler():
    direct = load('<smtpserver><port>2525</port><authRequired>announce</authRequired>'
                  '</smtpserver>')
    nested = load('<smtpserver><port>2525</port><handler><authRequired>announce'
                  '</authRequired></handler></smtpserver>')
    assert direct.smtpservers[0].auth_required == nested.smtpservers[0].auth_required \
        == "announce"


def test_several_smtpservers_are_several_listeners_and_disabled_ones_are_skipped():
    config = load("""
      <smtpserver><bind>127.0.0.1</bind><port>2525</port></smtpserver>
      <smtpserver name="submission"><port>5870</port>
        <handler><authBeforeMail>true</authBeforeMail></handler></smtpserver>
      <smtpserver enabled="false"><port>26</port></smtpserver>""")
    assert [(s.name, s.listen) for s in config.smtpservers] == [
        ("smtp", "tcp:2525:interface=127.0.0.1"), ("submission", "tcp:5870")]
    assert config.smtpservers[1].auth_before_mail


def test_james_handler_keys_map_to_the_model():
    config = load("""
      <smtpserver><port>2525</port><handler>
        <helloName autodetect="false">mx.example.com</helloName>
        <connectiontimeout>120000</connectiontimeout>
        <connectionLimit>100</connectionLimit>
        <connectionLimitPerIP>5</connectionLimitPerIP>
        <authorizedAddresses>127.0.0.0/8, 10.0.0.0/8</authorizedAddresses>
        <maxmessagesize>1024</maxmessagesize>
        <maxRcpt>10</maxRcpt>
        <heloEhloEnforcement>false</heloEhloEnforcement>
        <smtpGreeting>hello</smtpGreeting>
        <auth><requireSSL>true</requireSSL></auth>
        <tls socketTLS="true" startTLS="false">
          <privateKey>file://conf/key.pem</privateKey>
          <certificates>file://conf/cert.pem</certificates>
        </tls>
      </handler></smtpserver>""")
    smtp = config.smtpservers[0]
    assert smtp.helo_name == "mx.example.com" and smtp.connection_timeout == 120.0
    assert (smtp.connection_limit, smtp.connection_limit_per_ip) == (100, 5)
    assert smtp.authorized_addresses == ["127.0.0.0/8", "10.0.0.0/8"]
    assert smtp.max_message_size == 1024 * 1024 and smtp.max_recipients == 10
    assert smtp.helo_required is False and smtp.greeting == "hello"
    assert smtp.require_ssl and smtp.implicit_tls and not smtp.starttls
    assert (smtp.tls.certificate, smtp.tls.private_key) == ("conf/cert.pem", "conf/key.pem")


def test_storage_dns_and_logging_mirror_the_yaml():
    config = load("""
      <storage><url>sqlite:///m.db</url><dataDir>/srv/m</dataDir><poolSize>2</poolSize>
        <inlineBlobLimit>32k</inlineBlobLimit></storage>
      <dns><servers><server>127.0.0.1:5353</server><server>10.0.0.1</server></servers>
        <hosts><host domain="example.org">mx1.example.org:2525, mx2.example.org</host></hosts>
        <timeout>3</timeout></dns>
      <logging><level>debug</level><format>json</format></logging>""")
    assert (config.storage.url, config.storage.data_dir, config.storage.pool_size,
            config.storage.inline_blob_limit) == ("sqlite:///m.db", "/srv/m", 2, 32768)
    assert config.dns.servers == ["127.0.0.1:5353", "10.0.0.1"]
    assert config.dns.hosts == {"example.org": ["mx1.example.org:2525", "mx2.example.org"]}
    assert config.dns.timeout == 3.0
    assert (config.logging.level, config.logging.format) == ("debug", "json")


# -- errors ---------------------------------------------------------------------
def test_billion_laughs_is_refused():
    err = error_of("""<?xml version="1.0"?>
<!DOCTYPE config [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<config><postmaster>&lol2;</postmaster></config>""")
    assert err.source == "test.xml:3"
    assert "entity declarations are refused" in err.message


def test_external_entity_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("leaked")
    err = error_of(f"""<?xml version="1.0"?>
<!DOCTYPE config [
<!ENTITY listserverConfig SYSTEM "file://{secret}">
]>
<config><postmaster>&listserverConfig;</postmaster></config>""")
    assert err.source == "test.xml:3" and "leaked" not in str(err)
    assert "listserverConfig" in err.message


def test_external_dtd_is_refused(tmp_path):
    dtd = tmp_path / "ext.dtd"
    dtd.write_text('<!ENTITY pm "leaked@example.com">')
    err = error_of(f'<?xml version="1.0"?>\n<!DOCTYPE config SYSTEM "file://{dtd}">\n'
                   f'<config><postmaster>&pm;</postmaster></config>')
    assert err.source == "test.xml:2" and "ExternalReferenceForbidden" in err.message


def test_malformed_xml_reports_the_parser_line():
    err = error_of("<config>\n  <James>\n    <postmaster>a@b</James>\n</config>")
    assert err.source == "test.xml:3" and "XML syntax error" in err.message


def test_unknown_element_suggests_the_close_key():
    err = error_of("<config>\n<smtpserver><port>25</port>\n"
                   "<handler><authRequierd>true</authRequierd></handler>\n"
                   "</smtpserver></config>")
    assert err.source == "test.xml:3" and "did you mean 'authRequired'" in err.message


def test_unknown_attribute_is_an_error():
    err = error_of('<config>\n<spoolmanager><processor name="root">\n'
                   '<mailet match="All" clas="Null"/></processor></spoolmanager></config>')
    assert err.source == "test.xml:3" and "did you mean 'class'" in err.message


def test_bad_boolean_in_xml_names_key_and_line():
    err = error_of("<config>\n<pop3server><port>110</port>\n"
                   "<requireSSL>perhaps</requireSSL></pop3server></config>")
    assert err.source == "test.xml:3"
    assert "pop3server.requireSSL must be true or false" in err.message


def test_james2_blocks_say_what_to_do():
    err = error_of("<config>\n<dnsserver><servers/></dnsserver></config>")
    assert err.source == "test.xml:2" and "<dns>" in err.message


def test_servername_autodetect_is_refused_with_the_fix():
    err = error_of('<config><James>\n<servernames autodetect="true">'
                   '<servername>a.example</servername></servernames></James></config>')
    assert err.source == "test.xml:2" and 'autodetect="false"' in err.message


def test_wrong_root_element_is_an_error():
    assert "root element must be <config>" in error_of("<james/>").message


# -- James's units ------------------------------------------------------------------
@pytest.mark.parametrize("written,seconds", [
    ("360000", 360.0),          # James 2's config.xml: milliseconds
    ("6 minutes", 360.0), ("30s", 30.0), ("1500ms", 1.5)])
def test_config_xml_connectiontimeout_is_milliseconds_as_in_james2(written, seconds):
    config = load(f"<smtpserver><port>2525</port><handler><connectiontimeout>{written}"
                  f"</connectiontimeout></handler></smtpserver>"
                  f"<pop3server><port>1110</port><connectiontimeout>{written}"
                  f"</connectiontimeout></pop3server>")
    assert config.smtpservers[0].connection_timeout == seconds
    assert config.pop3servers[0].connection_timeout == seconds
    assert config.warnings == []


def test_config_xml_small_bare_timeout_warns_that_it_is_milliseconds():
    config = load("<smtpserver><port>2525</port>\n<connectiontimeout>360"
                  "</connectiontimeout></smtpserver>")
    assert config.smtpservers[0].connection_timeout == 0.36
    (warning,) = config.warnings
    assert warning.startswith("test.xml:2: <connectiontimeout>360</connectiontimeout> is "
                              "read as 360 milliseconds")
    assert "write 360s" in warning


@pytest.mark.parametrize("written,octets", [
    ("10240", 10 * 1024 * 1024),   # James: KiB when no unit
    ("10m", 10 * 1024 * 1024), ("10MiB", 10 * 1024 * 1024), ("0", 0)])
def test_xml_maxmessagesize_is_kib_as_in_james_without_a_warning(written, octets):
    config = load(f"<smtpserver><port>2525</port><maxmessagesize>{written}"
                  f"</maxmessagesize></smtpserver>")
    assert config.smtpservers[0].max_message_size == octets
    assert config.warnings == []


def test_james3_smtpserver_xml_counts_connectiontimeout_in_seconds():
    config = load_config_text(
        "<smtpservers><smtpserver enabled='true'><jmxName>smtpserver</jmxName>"
        "<bind>127.0.0.1:2525</bind><connectionBacklog>200</connectionBacklog>"
        "<tls socketTLS='false' startTLS='false'><keystore>file://conf/keystore"
        "</keystore><secret>s</secret></tls>"
        "<connectiontimeout>360</connectiontimeout><maxmessagesize>1024</maxmessagesize>"
        "<handlerchain><handler class='org.apache.james.smtpserver.fastfail.ValidRcptHandler'/>"
        "<handler class='org.apache.james.smtpserver.CoreCmdHandlerLoader'/></handlerchain>"
        "</smtpserver></smtpservers>", "xml", "smtpserver.xml")
    (smtp,) = config.smtpservers
    assert smtp.listen == "tcp:2525:interface=127.0.0.1"
    assert smtp.connection_timeout == 360.0 and smtp.max_message_size == 1024 * 1024
    assert smtp.reject_unknown_local_users and smtp.tls is None
    assert config.warnings == []


def test_james3_handler_we_lack_is_refused_naming_its_line():
    err = error_of("<smtpservers><smtpserver><bind>127.0.0.1:2525</bind>\n<handlerchain>\n"
                   "<handler class='org.apache.james.smtpserver.fastfail.DNSRBLHandler'/>"
                   "</handlerchain></smtpserver></smtpservers>")
    assert err.source == "test.xml:3"
    assert 'class="org.apache.james.smtpserver.fastfail.DNSRBLHandler"' in err.message


def test_james3_domainlist_xml_gives_the_servernames_default_first():
    config = load_config_text(
        "<domainlist class='org.apache.james.domainlist.memory.MemoryDomainList'>"
        "<domainnames><domainname>example.net</domainname><domainname>example.com"
        "</domainname></domainnames><autodetect>false</autodetect>"
        "<autodetectIP>false</autodetectIP><defaultDomain>example.com</defaultDomain>"
        "</domainlist>", "xml", "domainlist.xml")
    assert config.servernames == ["example.com", "example.net"]


def test_james2_package_lists_in_the_spoolmanager_are_accepted():
    config = load("<spoolmanager><mailetpackages><mailetpackage>org.apache.james.transport."
                  "mailets</mailetpackage></mailetpackages><matcherpackages><matcherpackage>"
                  "org.apache.james.transport.matchers</matcherpackage></matcherpackages>"
                  "</spoolmanager>", pipeline=False)
    assert "root" in config.spoolmanager.processors


JAMES3_LISTENERS = """<smtpservers>
  <smtpserver enabled="true">
    <jmxName>smtpserver-global</jmxName><bind>0.0.0.0:2525</bind>
    <tls socketTLS="false" startTLS="false"><keystore>file://conf/keystore</keystore>
      <keystoreType>PKCS12</keystoreType><secret>s</secret></tls>
    <connectiontimeout>360</connectiontimeout>
    <auth><announce>never</announce></auth>
    <authorizedAddresses>127.0.0.0/8</authorizedAddresses>
  </smtpserver>
  <smtpserver enabled="true">
    <jmxName>smtpserver-TLS</jmxName><bind>0.0.0.0:4650</bind>
    <tls socketTLS="true" startTLS="false"><keystore>file://conf/keystore</keystore>
      <keystoreType>PKCS12</keystoreType><secret>s</secret>
      <provider>org.bouncycastle.jce.provider.BouncyCastleProvider</provider>
      <algorithm>SunX509</algorithm>
      <privateKey>file://conf/private.key</privateKey>
      <certificates>file://conf/certs.pem</certificates></tls>
    <auth><announce>forUnauthorizedAddresses</announce></auth>
  </smtpserver>
  <smtpserver enabled="true">
    <jmxName>smtpserver-authenticated</jmxName><bind>0.0.0.0:5870</bind>
    <auth><announce>always</announce><required>true</required></auth>
  </smtpserver>
</smtpservers>"""


def test_james3_smtpserver_xml_auth_announce_and_pem_tls():
    config = load_config_text(JAMES3_LISTENERS, "xml", "smtpserver.xml")
    plain, tls, submission = config.smtpservers
    assert (plain.auth_required, plain.tls) == ("false", None)
    assert tls.auth_required == "true" and tls.implicit_tls
    assert (tls.tls.private_key, tls.tls.certificate) == ("conf/private.key",
                                                          "conf/certs.pem")
    assert submission.auth_required == "announce" and submission.auth_before_mail


def test_james3_keystore_without_pem_files_is_refused_saying_what_to_write():
    text = JAMES3_LISTENERS.replace(
        "<privateKey>file://conf/private.key</privateKey>", "").replace(
        "<certificates>file://conf/certs.pem</certificates>", "")
    with pytest.raises(ConfigurationError) as info:
        load_config_text(text, "xml", "smtpserver.xml")
    assert info.value.source == "smtpserver.xml:12"
    assert "mailet-mta reads PEM files: add <privateKey>" in info.value.message


def test_james3_auth_announce_is_an_unknown_key_for_pop3():
    with pytest.raises(ConfigurationError, match="unknown key 'announce' in pop3server.auth"):
        load_config_text("<pop3servers><pop3server><bind>127.0.0.1:1110</bind><auth>"
                         "<announce>always</announce></auth></pop3server></pop3servers>",
                         "xml", "pop3server.xml")


def test_exception_policies_may_be_attributes_in_any_case_as_james_writes_them():
    config = load_config_text(
        "<mailetcontainer><processors><processor state='root'>"
        "<mailet match='All' class='SetMimeHeader' onMatchException='noMatch'>"
        "<name>X-A</name><value>1</value><onMailetException>Ignore</onMailetException>"
        "</mailet><mailet match='All' class='Null' onMailetException='error'/>"
        "</processor><processor state='error'><mailet match='All' class='Null'/>"
        "</processor></processors></mailetcontainer>", "xml", "m.xml")
    first, second = config.spoolmanager.processors["root"].mailets
    assert (first.on_match_exception, first.on_mailet_exception) == ("nomatch", "ignore")
    assert first.parameters == {"name": "X-A", "value": "1"}
    assert second.on_mailet_exception == "error"
