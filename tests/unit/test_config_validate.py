"""Structural checks of a configuration: processors, policies, composites, listeners."""

from __future__ import annotations

import textwrap

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config import ServerConfig, load_config_text, validate_config


def load(text: str):
    return load_config_text(textwrap.dedent(text), "yaml", "v.yaml")


def error_of(text: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        load(text)
    return info.value


def pipeline(root: str = "[{class: Null}]", extra: str = "") -> str:
    return ("spoolmanager:\n  processors:\n"
            f"    root: {root}\n    error: [{{class: Null}}]\n{extra}")


# -- processors -------------------------------------------------------------------
def test_missing_root_processor_is_an_error_at_the_spoolmanager_line():
    err = error_of("servernames: [a.example]\nspoolmanager:\n  processors:\n"
                   "    error: [{class: Null}]\n")
    assert err.source == "v.yaml:2" and "no 'root' processor" in err.message


def test_missing_error_processor_is_an_error():
    err = error_of("spoolmanager:\n  processors:\n    root: [{class: Null}]\n")
    assert err.source == "v.yaml:1" and "no 'error' processor" in err.message


def test_file_without_spoolmanager_runs_the_default_pipeline():
    from mailet_mta.config import default_config, load_config_text

    config = load_config_text("servernames: [a.example]\n", "yaml", "v.yaml")
    assert set(config.spoolmanager.processors) == set(default_config().spoolmanager.processors)


def test_processors_without_root_point_at_the_spoolmanager():
    err = error_of("spoolmanager:\n  processors:\n    error:\n      mailets:\n"
                   "        - {match: All, class: Null}\n")
    assert "'root'" in err.message and "conf/mailet-mta.yaml" in err.message


def test_model_built_in_code_is_checked_too():
    with pytest.raises(ConfigurationError, match="no 'root' processor"):
        validate_config(ServerConfig())


def test_processor_named_ghost_is_an_error():
    err = error_of(pipeline(extra="    ghost: [{class: Null}]\n"))
    assert err.source == "v.yaml:5" and "may not be named 'ghost'" in err.message


@pytest.mark.parametrize("key", ["onMailetException", "onMatchException"])
def test_unknown_exception_policy_is_an_error(key):
    err = error_of(pipeline(root=f"[{{class: Null, {key}: ignroe}}]"))
    assert err.source == "v.yaml:3" and key in err.message and "'ignroe'" in err.message


def test_exception_policies_accept_keywords_and_processor_names():
    config = load(pipeline(
        root="[{class: Null, onMailetException: propagate, onMatchException: matchall},"
             " {class: Null, onMailetException: spam, onMatchException: spam}]",
        extra="    spam: [{class: Null}]\n"))
    first, second = config.spoolmanager.processors["root"].mailets
    assert (first.on_mailet_exception, first.on_match_exception) == ("propagate", "matchall")
    assert second.on_mailet_exception == "spam"


def test_nomatch_is_not_a_mailet_exception_policy():
    err = error_of(pipeline(root="[{class: Null, onMailetException: nomatch}]"))
    assert "onMailetException is 'nomatch'" in err.message


def test_to_processor_naming_an_undefined_processor_is_an_error():
    err = error_of(pipeline(
        root="[{class: ToProcessor, parameters: {processor: transprot}}]",
        extra="    transport: [{class: Null}]\n"))
    assert err.source == "v.yaml:3" and "'transprot'" in err.message
    assert "did you mean 'transport'" in err.message


def test_to_processor_without_a_processor_is_an_error():
    err = error_of(pipeline(root="[{class: ToProcessor}]"))
    assert "needs the parameter processor" in err.message


def test_bounce_processor_parameter_must_name_a_processor():
    err = error_of(pipeline(
        root="[{class: RemoteDelivery, parameters: {bounceProcessor: bounces}}]"))
    assert "bounceProcessor names processor 'bounces'" in err.message


# -- composite matchers -----------------------------------------------------------
def test_composite_matchers_in_a_circle_are_an_error():
    err = error_of("""
        spoolmanager:
          processors:
            root:
              matchers:
                a: {match: Or, matchers: [b, All]}
                b: {match: Not, matchers: [a]}
              mailets: [{match: a, class: Null}]
            error: [{class: Null}]
    """)
    assert err.source == "v.yaml:6" and "a -> b -> a" in err.message


def test_composite_referring_to_itself_is_an_error():
    err = error_of("""
        spoolmanager:
          processors:
            root:
              matchers:
                loop: {match: Not, matchers: [{match: Or, matchers: [loop]}]}
              mailets: [{match: loop, class: Null}]
            error: [{class: Null}]
    """)
    assert "loop -> loop" in err.message


def test_composites_may_refer_to_each_other_without_a_circle():
    config = load("""
        spoolmanager:
          processors:
            root:
              matchers:
                outer: {match: Not, matchers: [inner]}
                inner: {match: Or, matchers: [SMTPAuthSuccessful, SentByMailet]}
              mailets: [{match: outer, class: Null}]
            error: [{class: Null}]
    """)
    assert config.spoolmanager.processors["root"].matchers["outer"].children[0].name == \
        "inner"


def test_composite_without_children_is_an_error():
    err = error_of("""
        spoolmanager:
          processors:
            root:
              matchers:
                empty: {match: Or}
              mailets: [{class: Null}]
            error: [{class: Null}]
    """)
    assert err.source == "v.yaml:6" and "has no child matchers" in err.message


# -- listeners ---------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["tcp:abc", "smtp:25", "tcp:25:colour=blue",
                                      "tcp:70000", "tcp"])
def test_bad_endpoint_is_an_error_at_the_listener_line(endpoint):
    err = error_of(pipeline() + f"smtpservers:\n  - listen: '{endpoint}'\n")
    assert err.source == "v.yaml:6"
    assert "listen" in err.message and "tcp:25" in err.message


@pytest.mark.parametrize("first,second", [
    ("tcp:2525", "tcp:2525"),
    ("tcp:2525:interface=127.0.0.1", "tcp:2525:interface=127.0.0.1"),
    ("tcp:2525", "tcp:2525:interface=127.0.0.1"),
    ("tcp:2525:interface=0.0.0.0", "tcp:2525"),
])
def test_two_listeners_on_one_socket_are_an_error(first, second):
    err = error_of(pipeline() + f"smtpservers:\n  - listen: '{first}'\n"
                   f"pop3servers:\n  - listen: '{second}'\n")
    assert err.source == "v.yaml:8" and "the same socket as smtpserver 'smtp'" in err.message


def test_listeners_on_distinct_sockets_or_port_zero_are_fine():
    config = load(pipeline() + "smtpservers:\n"
                  "  - {listen: 'tcp:2525:interface=127.0.0.1'}\n"
                  "  - {listen: 'tcp:2525:interface=127.0.0.2'}\n"
                  "  - {listen: 'tcp:0'}\n  - {listen: 'tcp:0'}\n")
    assert [s.name for s in config.smtpservers] == ["smtp", "smtp-2", "smtp-3", "smtp-4"]


def test_two_listeners_with_one_name_are_an_error():
    err = error_of(pipeline() + "smtpservers:\n  - {name: mx, listen: 'tcp:25'}\n"
                   "  - {name: mx, listen: 'tcp:26'}\n")
    assert err.source == "v.yaml:7" and "named 'mx'" in err.message


# -- values --------------------------------------------------------------------------
def test_postmaster_must_be_an_address():
    err = error_of(pipeline() + "postmaster: 'a b@@example.com'\n")
    assert err.source == "v.yaml:5" and "postmaster" in err.message


def test_servername_address_literal_is_an_error():
    err = error_of(pipeline() + "servernames: ['[127.0.0.1]']\n")
    assert "address literal" in err.message


def test_negative_connection_limit_is_an_error():
    err = error_of(pipeline() + "smtpserver: {listen: 'tcp:25', connectionLimit: -1}\n")
    assert "connectionLimit must be at least 0" in err.message


@pytest.mark.parametrize("entry", ["127.0.0.1/33", "10.0.0.300", "10.0.0.0/8x", "a b"])
def test_bad_authorized_address_is_an_error(entry):
    err = error_of(pipeline() + f"smtpserver: {{listen: 'tcp:25', "
                   f"authorizedAddresses: ['{entry}']}}\n")
    assert "authorizedAddresses" in err.message and repr(entry) in err.message


def test_james_network_forms_are_accepted():
    config = load(pipeline() + "smtpserver: {listen: 'tcp:25', authorizedAddresses: "
                  "'127.0.0.0/8, 10.0.0.0/255.0.0.0, 192.168.0.*, ::1, relay.example.com'}\n")
    assert len(config.smtpservers[0].authorized_addresses) == 5


def test_match_and_notmatch_together_are_an_error():
    err = error_of(pipeline(root="[{match: All, notmatch: All, class: Null}]"))
    assert "both match and notmatch" in err.message
