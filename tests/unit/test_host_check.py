"""Which Host an HTTP listener answers (webadmin, webmail): names, IP literals, errors."""

from __future__ import annotations

import pytest
from twisted.web.test.requesthelper import DummyRequest

from mailet_mta.api import ConfigurationError
from mailet_mta.config import load_config_text
from mailet_mta.config.webadmin import webadmin_config
from mailet_mta.config.webmail import webmail_config
from mailet_mta.web.host_check import HostCheck, default_hostnames, host_check, host_name
from mailet_mta.web.http import HTTPError

CONFIG = """
servernames: [Example.com, example.net]
smtpservers: [{name: smtp, listen: "tcp:0:interface=127.0.0.1", helloName: mx.example.org}]
"""


def loaded(extra: str = ""):
    return load_config_text(CONFIG + extra, "yaml")


@pytest.mark.parametrize("header, name", [
    ("example.com", "example.com"), ("Example.COM.:8080", "example.com"),
    ("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8081", "::1"), ("[::1]", "::1"),
    ("localhost", "localhost"),
    ("", None), (":80", None), ("a b", None), ("host:80:90", None), ("host:x", None),
    ("[::1", None), ("[::1]x", None), ("[example.com]", None), ("host:123456", None),
])
def test_the_host_header_gives_its_name_without_the_port(header, name):
    assert host_name(header) == name


def test_names_wildcards_and_ip_literals_are_accepted_and_nothing_else():
    check = HostCheck(["Mail.Example.com.", "*.webmail.test"])
    for name in ("mail.example.com", "a.webmail.test", "b.a.webmail.test", "127.0.0.1",
                 "::1", "192.0.2.10"):
        assert check.allows(name), name
    for name in ("example.com", "webmail.test", "mail.example.com.evil.test",
                 "evilwebmail.test", "localhost"):
        assert not check.allows(name), name


def test_the_default_names_are_localhost_the_servernames_the_hello_names_and_a_named_host():
    config = loaded("webadmin: {enabled: true, host: admin.example.com}\n")
    assert default_hostnames(webadmin_config(config), config) == [
        "localhost", "example.com", "example.net", "mx.example.org", "admin.example.com"]
    config = loaded("webmail: {enabled: true}\n")
    assert default_hostnames(webmail_config(config), config) == [
        "localhost", "example.com", "example.net", "mx.example.org"]


def request_with_host(*values: bytes) -> DummyRequest:
    request = DummyRequest([b"healthcheck"])
    request.requestHeaders.removeHeader(b"host")
    if values:
        request.requestHeaders.setRawHeaders(b"host", list(values))
    return request


def test_a_foreign_name_is_421_and_a_missing_or_doubled_host_is_400():
    config = loaded("webadmin: {enabled: true, hostnames: [admin.example.com]}\n")
    check = host_check(webadmin_config(config), config)
    check.check(request_with_host(b"admin.example.com:8000"))
    check.check(request_with_host(b"127.0.0.1:8000"))
    for values, status in [((b"example.com",), 421), ((b"evil.test",), 421), ((), 400),
                           ((b"admin.example.com", b"admin.example.com"), 400),
                           ((b"bad host",), 400)]:
        with pytest.raises(HTTPError) as caught:
            check.check(request_with_host(*values))
        assert caught.value.status == status, values


def test_hostnames_is_read_in_both_sections_and_checked():
    config = loaded("webadmin: {hostnames: [a.example.com, '*.b.example.com']}\n"
                    "webmail: {hostnames: 'c.example.com, d.example.com'}\n")
    assert webadmin_config(config).hostnames == ["a.example.com", "*.b.example.com"]
    assert webmail_config(config).hostnames == ["c.example.com", "d.example.com"]
    assert webmail_config(loaded()).hostnames is None
    for bad in ("'http://a.example.com'", "'a..example.com'", "'*'", "'a.*.example.com'"):
        with pytest.raises(ConfigurationError, match="webmail.hostnames"):
            loaded(f"webmail: {{hostnames: [{bad}]}}\n")
