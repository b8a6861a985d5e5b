"""The YAML configuration: the embedded default, conf/mailet-mta.yaml, every key, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config import default_config, load_config, load_config_text
from mailet_mta.config.build import POP3_KEYS, SMTP_KEYS

CONF = Path(__file__).resolve().parents[2] / "conf"

PIPELINE = """
spoolmanager:
  processors:
    root: [{match: All, class: ToProcessor, parameters: {processor: error}}]
    error: [{class: Null}]
"""


def load(text: str, pipeline: bool = True):
    body = textwrap.dedent(text)
    return load_config_text(body + (PIPELINE if pipeline else ""), "yaml", "test.yaml")


def error_of(text: str, pipeline: bool = True) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        load(text, pipeline)
    return info.value


# -- the embedded default --------------------------------------------------------------
def test_default_config_has_the_documented_listeners_and_storage():
    config = default_config()
    assert config.servernames == ["localhost"]
    assert config.storage.data_dir == "./var" and config.storage.url is None
    smtp, submission = config.smtpservers
    assert (smtp.name, smtp.listen) == ("smtp", "tcp:2525:interface=127.0.0.1")
    assert smtp.auth_required == "true" and smtp.require_ssl is False
    assert smtp.authorized_addresses == ["127.0.0.0/8", "::1"]
    assert (submission.name, submission.listen) == ("submission",
                                                    "tcp:5870:interface=127.0.0.1")
    assert submission.auth_before_mail is True
    (pop3,) = config.pop3servers
    assert pop3.listen == "tcp:1110:interface=127.0.0.1" and pop3.require_ssl is False
    assert config.path is None


def test_default_config_data_dir_argument_replaces_storage_dir(tmp_path):
    assert default_config(str(tmp_path)).storage.data_dir == str(tmp_path)


def test_default_pipeline_is_the_james_like_one():
    procs = default_config().spoolmanager.processors
    assert list(procs) == ["root", "transport", "local-delivery", "local-delivery-error",
                           "relay",
                           "local-address-error", "relay-denied", "rrt-error", "bounces",
                           "error"]
    pairs = {name: [(m.match.name if m.match else None, m.mailet) for m in p.mailets]
             for name, p in procs.items()}
    assert pairs["root"] == [("All", "PostmasterAlias"), ("RelayLimit", "ToRepository"),
                             ("All", "ToProcessor")]
    assert procs["root"].mailets[1].match.condition == "30"
    assert pairs["transport"] == [
        ("All", "RemoveMimeHeader"), ("All", "RecipientRewriteTable"),
        ("RecipientIsLocal", "ToProcessor"), ("HostIsLocal", "ToProcessor"),
        ("relay-allowed", "ToProcessor"), ("All", "ToProcessor")]
    relay_allowed = procs["transport"].matchers["relay-allowed"]
    assert relay_allowed.name == "Or"
    assert [c.name for c in relay_allowed.children] == [
        "SMTPAuthSuccessful", "SMTPIsAuthNetwork", "SentByMailet"]
    assert procs["transport"].mailets[3].parameters == {
        "processor": "local-address-error", "notice": "550 5.1.1 mailbox unknown"}
    assert procs["relay"].mailets[0].parameters == {
        "outgoing": "outgoing", "delayTime": "5*5 minutes, 3*1 hour, 3*6 hours",
        "maxRetries": "11", "sendpartial": "true", "bounceProcessor": "bounces"}
    for name in ("local-address-error", "rrt-error"):       # no backscatter
        assert procs[name].mailets[0].match.name == "trusted-client"
        assert [c.name for c in procs[name].matchers["trusted-client"].children] == [
            "SMTPAuthSuccessful", "SMTPIsAuthNetwork"]
        assert procs[name].mailets[0].parameters["passThrough"] == "true"
    assert [m.mailet for m in procs["relay-denied"].mailets] == ["ToRepository"]
    assert procs["rrt-error"].mailets[1].parameters == {"repositoryPath": "rrt-error"}
    assert procs["bounces"].mailets[0].parameters == {"passThrough": "false"}
    assert procs["error"].mailets[0].parameters == {"repositoryPath": "error"}


def test_every_object_carries_its_file_and_line():
    config = default_config()
    root = config.spoolmanager.processors["root"]
    assert root.source.endswith("default.yaml:12")
    assert root.mailets[0].source.endswith("default.yaml:14")
    lines = Path(config.smtpservers[1].source.rpartition(":")[0]).read_text().splitlines()
    line = lines.index("  - name: submission") + 1
    assert config.smtpservers[1].source.endswith(f"default.yaml:{line}")


# -- conf/mailet-mta.yaml -----------------------------------------------------------
def test_production_example_loads_with_tls_everywhere():
    config = load_config(CONF / "mailet-mta.yaml")
    assert config.path == str(CONF / "mailet-mta.yaml")
    by_name = {s.name: s for s in config.smtpservers}
    assert by_name["smtp"].listen == "tcp:25" and by_name["smtp"].require_ssl
    assert by_name["submission"].listen == "tcp:587"
    assert by_name["submission"].auth_before_mail
    assert by_name["submissions"].listen == "tcp:465" and by_name["submissions"].implicit_tls
    assert by_name["smtp"].max_message_size == 50 * 1024 * 1024
    pops = {p.name: p for p in config.pop3servers}
    assert pops["pop3"].listen == "tcp:110" and pops["pop3"].require_ssl
    assert pops["pop3s"].listen == "tcp:995" and pops["pop3s"].implicit_tls
    for listener in [*config.smtpservers, *config.pop3servers]:
        assert listener.tls.certificate.startswith("/etc/mailet-mta/")
        assert listener.tls.private_key.startswith("/etc/mailet-mta/")


# -- keys -------------------------------------------------------------------------
SAMPLES = {
    "name": ("edge", "edge"), "listen": ("tcp:2600", "tcp:2600"),
    "implicit_tls": ("true", True), "require_ssl": ("true", True),
    "connection_timeout": ("2 minutes", 120.0), "connection_limit": (7, 7),
    "auth_failure_delay": ("250ms", 0.25), "starttls": ("false", False),
    "helo_name": ("mx.example.org", "mx.example.org"), "greeting": ("hi", "hi"),
    "auth_required": ("announce", "announce"), "auth_before_mail": ("yes", True),
    "verify_identity": ("relaxed", "relaxed"),
    "authorized_addresses": ("10.0.0.0/8, 192.168.0.0/16", ["10.0.0.0/8", "192.168.0.0/16"]),
    "max_recipients": (50, 50), "connection_limit_per_ip": (3, 3),
    "max_header_size": ("64k", 65536),
    "helo_required": ("false", False), "enable_vrfy": ("true", True),
    "reject_unknown_local_users": ("false", False),
    "dmarc_reject": ("true", True),
    "arc_trusted_sealers": ("lists.example.org, fwd.example.net",
                            ["lists.example.org", "fwd.example.net"]),
}
TLS = "{certificate: /c.pem, privateKey: /k.pem}"


@pytest.mark.parametrize("kind,table", [("smtpserver", SMTP_KEYS), ("pop3server", POP3_KEYS)])
def test_every_listener_key_sets_its_model_field(kind, table):
    for key, (field, _) in table.items():
        if field == "max_message_size":
            continue  # units differ by spelling: see the size tests
        value, expected = SAMPLES[field]
        listen = "" if field == "listen" else "listen: tcp:2600\n  "
        config = load(f"{kind}:\n  {listen}{key}: {value}\n  tls: {TLS}\n")
        listener = (config.smtpservers if kind == "smtpserver" else config.pop3servers)[0]
        assert getattr(listener, field) == expected, key


@pytest.mark.parametrize("key,value,octets", [
    ("maxmessagesize", "10m", 10 * 1024 * 1024),
    ("maxMessageSize", "0", 0),
    ("max_message_size", "1k", 1024),
    ("max_message_size", "10M", 10 * 1024 * 1024),
    ("maxmessagesize", "10MiB", 10 * 1024 * 1024),
    ("maxMessageSize", "2048B", 2048),
])
def test_maxmessagesize_units(key, value, octets):
    config = load(f"smtpserver: {{listen: 'tcp:2600', {key}: {value}}}\n")
    assert config.smtpservers[0].max_message_size == octets
    assert config.warnings == []


@pytest.mark.parametrize("key", ["maxmessagesize", "maxMessageSize", "max_message_size"])
@pytest.mark.parametrize("value", ["2048", "'2048'"])
def test_yaml_spellings_of_maxmessagesize_agree_on_a_bare_number_and_warn(key, value):
    """A bare number is KiB (James's unit) in every spelling, and the warning names the
    line, the reading and how to write the unit out."""
    config = load(f"smtpserver:\n  listen: tcp:2600\n  {key}: {value}\n")
    assert config.smtpservers[0].max_message_size == 2048 * 1024
    (warning,) = config.warnings
    assert warning.startswith(f"test.yaml:3: smtpserver.{key}: 2048 has no unit")
    assert "read as 2048 KiB (2 MiB)" in warning and "write 2048k" in warning


def test_bare_zero_maxmessagesize_is_unlimited_without_a_warning():
    config = load("smtpserver: {listen: 'tcp:2600', max_message_size: 0}\n")
    assert config.smtpservers[0].max_message_size == 0 and config.warnings == []


@pytest.mark.parametrize("written,seconds,warned", [
    ("300", 300.0, True), ("'300'", 300.0, True), ("300s", 300.0, False),
    ("500ms", 0.5, False), ("5 minutes", 300.0, False)])
def test_yaml_connectiontimeout_is_seconds_and_a_bare_number_warns(written, seconds, warned):
    config = load(f"smtpserver:\n  listen: tcp:2600\n  connectiontimeout: {written}\n")
    assert config.smtpservers[0].connection_timeout == seconds
    if warned:
        (warning,) = config.warnings
        assert warning.startswith("test.yaml:3: smtpserver.connectiontimeout: 300 has no "
                                  "unit and is read as 300 seconds")
        assert "milliseconds" in warning and "write 300s" in warning
    else:
        assert config.warnings == []


@pytest.mark.parametrize("written,normal", [
    ("true", "true"), ("false", "false"), ("announce", "announce"), ("yes", "true")])
def test_auth_required_is_normalised(written, normal):
    config = load(f"smtpserver: {{listen: 'tcp:2600', authRequired: {written}}}\n")
    assert config.smtpservers[0].auth_required == normal


@pytest.mark.parametrize("written,normal", [
    ("strict", "strict"), ("true", "strict"), ("relaxed", "relaxed"),
    ("false", "false"), ("disabled", "false")])
def test_verify_identity_is_normalised(written, normal):
    config = load(f"smtpserver: {{listen: 'tcp:2600', verifyIdentity: {written}}}\n")
    assert config.smtpservers[0].verify_identity == normal


@pytest.mark.parametrize("bind,port,endpoint", [
    (None, 25, "tcp:25"), ("127.0.0.1", 2525, "tcp:2525:interface=127.0.0.1"),
    ("0.0.0.0", 25, "tcp:25"), ("'::1'", 25, r"tcp6:25:interface=\:\:1")])
def test_james_bind_and_port_become_an_endpoint(bind, port, endpoint):
    bind_key = f"bind: {bind}, " if bind else ""
    config = load(f"smtpserver: {{{bind_key}port: {port}}}\n")
    assert config.smtpservers[0].listen == endpoint


@pytest.mark.parametrize("bind,endpoint", [
    ("0.0.0.0:25", "tcp:25"), ("127.0.0.1:2525", "tcp:2525:interface=127.0.0.1"),
    ("'[::1]:25'", r"tcp6:25:interface=\:\:1")])
def test_james3_bind_with_port_becomes_an_endpoint(bind, endpoint):
    assert load(f"smtpserver: {{bind: {bind}}}\n").smtpservers[0].listen == endpoint


def test_bind_without_port_is_an_error():
    err = error_of("smtpserver: {bind: 127.0.0.1}\n")
    assert "bind needs a port" in err.message


def test_james_auth_require_ssl_spellings():
    dotted = load(f"smtpserver: {{listen: 'tcp:2600', auth.requireSSL: true, tls: {TLS}}}\n")
    nested = load(f"smtpserver: {{listen: 'tcp:2600', auth: {{requireSSL: true}}, "
                  f"tls: {TLS}}}\n")
    assert dotted.smtpservers[0].require_ssl and nested.smtpservers[0].require_ssl


def test_tls_block_james_flags_set_the_listener():
    config = load("smtpserver:\n  listen: tcp:2600\n  tls: {socketTLS: true, "
                  "startTLS: false, certificates: file:///c.pem, privateKey: /k.pem, "
                  "minimumVersion: TLSv1.3}\n")
    smtp = config.smtpservers[0]
    assert smtp.implicit_tls is True and smtp.starttls is False
    assert (smtp.tls.certificate, smtp.tls.private_key) == ("/c.pem", "/k.pem")
    assert smtp.tls.minimum_version == "TLSv1.3"


def test_other_sections_map_every_key():
    config = load("""
        servernames: [Example.COM, mail.example.com]
        postmaster: hostmaster
        storage: {url: "sqlite:///x.db", dataDir: /srv/mail, inlineBlobLimit: 1m, poolSize: 3}
        dns: {servers: ["127.0.0.1:53"], hosts: {example.org: [mx1.example.org:2525]},
              timeout: 5s}
        logging: {level: warning, file: /var/log/m.log, format: json}
        extra: {metrics: {port: 9100}}
        x-anchors: {whatever: 1}
    """)
    assert config.servernames == ["example.com", "mail.example.com"]
    assert config.postmaster == "hostmaster@example.com"
    assert (config.storage.url, config.storage.data_dir) == ("sqlite:///x.db", "/srv/mail")
    assert (config.storage.inline_blob_limit, config.storage.pool_size) == (1048576, 3)
    assert config.dns.servers == ["127.0.0.1:53"]
    assert config.dns.hosts == {"example.org": ["mx1.example.org:2525"]}
    assert config.dns.timeout == 5.0
    assert (config.logging.level, config.logging.file, config.logging.format) == (
        "warn", "/var/log/m.log", "json")
    assert config.extra == {"metrics": {"port": 9100}}


def test_spoolmanager_keys_and_mailet_options():
    config = load_config_text(textwrap.dedent("""
        spoolmanager:
          threads: 4
          maxTries: 3
          errorRepository: broken
          max_state_changes: 20
          processors:
            root:
              - {notmatch: HasHeader=X-Spam, class: ToProcessor,
                 parameters: {processor: error, tags: [a, b]},
                 onMailetException: ignore, on_match_exception: nomatch}
              - {class: Null}
            error: [{class: Null}]
    """), "yaml")
    spool = config.spoolmanager
    assert (spool.threads, spool.max_tries, spool.error_repository,
            spool.max_state_changes) == (4, 3, "broken", 20)
    first, second = spool.processors["root"].mailets
    assert first.notmatch and (first.match.name, first.match.condition) == ("HasHeader",
                                                                           "X-Spam")
    assert first.parameters == {"processor": "error", "tags": "a,b"}
    assert (first.on_mailet_exception, first.on_match_exception) == ("ignore", "nomatch")
    assert second.match is None  # no match means All


def test_match_splits_at_the_first_equals_sign():
    config = load_config_text(
        "spoolmanager:\n  processors:\n"
        "    root: [{match: 'HasHeader=X-A=b=c', class: Null}]\n"
        "    error: [{class: Null}]\n", "yaml")
    match = config.spoolmanager.processors["root"].mailets[0].match
    assert (match.name, match.condition) == ("HasHeader", "X-A=b=c")


def test_yaml_merge_keys_and_anchors_work():
    config = load("""
        x-base: &base {authRequired: false, verifyIdentity: relaxed}
        smtpservers:
          - {<<: *base, listen: "tcp:2600"}
          - {<<: *base, listen: "tcp:2601", authRequired: announce}
    """)
    first, second = config.smtpservers
    assert (first.auth_required, first.verify_identity) == ("false", "relaxed")
    assert (second.auth_required, second.verify_identity) == ("announce", "relaxed")


def test_load_config_picks_the_format_by_extension(tmp_path):
    path = tmp_path / "m.yml"
    path.write_text(PIPELINE + "servernames: [example.net]\n")
    assert load_config(path).servernames == ["example.net"]
    with pytest.raises(ConfigurationError, match=r"\.yaml, \.yml or \.xml"):
        load_config(tmp_path / "m.conf")


# -- errors -------------------------------------------------------------------------
def test_unknown_key_names_line_and_suggests_the_close_one():
    err = error_of("""
        smtpserver:
          listen: tcp:2600
          authRequird: true
    """)
    assert str(err).startswith("test.yaml:4: unknown key 'authRequird' in smtpserver")
    assert "did you mean 'authRequired'" in str(err)


def test_unknown_top_level_key_is_an_error():
    err = error_of("servrnames: [a.example]\n")
    assert err.source == "test.yaml:1" and "did you mean 'servernames'" in err.message


def test_bad_boolean_names_key_and_line():
    err = error_of("smtpserver:\n  listen: tcp:2600\n  authBeforeMail: sometimes\n")
    assert err.source == "test.yaml:3"
    assert "smtpserver.authBeforeMail must be true or false" in err.message


def test_bad_auth_required_lists_the_choices():
    err = error_of("smtpserver: {listen: 'tcp:2600', authRequired: maybe}\n")
    assert "authRequired must be true, false or announce" in str(err)


def test_bad_size_names_key_and_line():
    err = error_of("smtpserver:\n  listen: tcp:2600\n  maxmessagesize: 10 parsecs\n")
    assert err.source == "test.yaml:3"
    assert "smtpserver.maxmessagesize must be a size like 512, 10k or 1m" in err.message


@pytest.mark.parametrize("line", ["threads: 0", "threads: -2", "maxTries: many"])
def test_spool_numbers_must_be_positive_whole_numbers(line):
    with pytest.raises(ConfigurationError, match=r"test.yaml:2: spoolmanager\.\w+ must"):
        load_config_text(f"spoolmanager:\n  {line}\n", "yaml", "test.yaml")


def test_negative_duration_is_refused():
    err = error_of("smtpserver: {listen: 'tcp:2600', connectiontimeout: -5}\n")
    assert "connectiontimeout must be more than zero seconds" in str(err)


def test_two_spellings_of_one_key_are_an_error():
    err = error_of("smtpserver: {listen: 'tcp:2600', authRequired: true, "
                   "auth_required: false}\n")
    assert "sets the same thing as smtpserver.authRequired" in str(err)


def test_duplicate_yaml_key_is_an_error():
    err = error_of("servernames: [a.example]\nservernames: [b.example]\n")
    assert err.source == "test.yaml:2" and "written twice" in err.message


def test_malformed_yaml_reports_the_parser_line():
    err = error_of("servernames: [a.example\nstorage:\n  data_dir: x\n", pipeline=False)
    assert str(err).startswith("test.yaml:")
    assert "YAML syntax error" in err.message
    assert err.source in ("test.yaml:2", "test.yaml:3")


@pytest.mark.parametrize("text,line", [
    ('servernames: [a.example]\nsmtpserver:\n  helloName: "mx.a.example\n  x: 1\n', 3),
    ("servernames: [a.example]\nsmtpserver:\n  helloName: 'mx\n\n\n", 3),
    ("servernames: [a.example\n", 1),
], ids=["double_quote", "single_quote_blank_lines_after", "bracket_at_the_end"])
def test_something_left_open_to_the_end_of_the_file_is_reported_where_it_opens(text, line):
    err = error_of(text, pipeline=False)
    assert err.source == f"test.yaml:{line}" and "YAML syntax error" in err.message


def test_python_tags_are_refused():
    err = error_of("postmaster: !!python/object/apply:os.system ['true']\n")
    assert err.source == "test.yaml:1" and "tag" in err.message


def test_alias_bomb_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        prev = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, " \
                f"*{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    err = error_of("extra:\n  " + bomb.replace("\n", "\n  "), pipeline=False)
    assert "expands to more than" in err.message


def test_empty_file_says_where_to_start():
    err = error_of("", pipeline=False)
    assert "the file is empty" in err.message


def test_listener_without_endpoint_says_what_to_write():
    err = error_of("smtpserver: {authRequired: true}\n")
    assert "needs listen (a Twisted endpoint such as tcp:25) or port" in str(err)


def test_implicit_tls_without_certificate_is_an_error():
    err = error_of("smtpserver: {listen: 'tcp:465', implicitTLS: true}\n")
    assert "implicitTLS but has no tls block" in str(err)


def test_tls_with_only_a_certificate_is_an_error():
    err = error_of("smtpserver: {listen: 'tcp:465', tls: {certificate: /c.pem}}\n")
    assert "add privateKey" in str(err)


def test_mailet_without_class_is_an_error():
    with pytest.raises(ConfigurationError) as info:
        load_config_text("spoolmanager:\n  processors:\n    root:\n      - match: All\n"
                         "    error: [{class: Null}]\n", "yaml", "p.yaml")
    assert info.value.source == "p.yaml:4" and "needs class" in info.value.message


def test_invalid_servername_is_an_error():
    err = error_of("servernames: [exa_mple.com]\n")
    assert err.source == "test.yaml:1" and "not a valid domain" in err.message


def test_empty_servernames_is_an_error():
    err = error_of("servernames: []\n")
    assert "servernames is empty" in err.message
