"""Hot reload of a running MailServer (in process): what changes, what is refused."""

from __future__ import annotations

import copy

import pytest
import pytest_twisted
import yaml
from twisted.internet import defer

from mailet_mta.config import load_config
from mailet_mta.service import MailServer
from tests.support.certs import make_cert

PROCESSORS = {
    "root": [{"match": "RecipientIsLocal", "class": "LocalDelivery"},
             {"match": "All", "class": "Null"}],
    "error": [{"match": "All", "class": "Null"}],
}


def write_config(path, data_dir, **changes) -> dict:
    config = {
        "servernames": ["example.com"],
        "storage": {"data_dir": str(data_dir)},
        "smtpservers": [{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1",
                         "authorizedAddresses": ["127.0.0.1/32"]}],
        "pop3servers": [{"name": "pop3", "listen": "tcp:0:interface=127.0.0.1"}],
        "spoolmanager": {"threads": 4, "processors": copy.deepcopy(PROCESSORS)},
    }
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


@pytest.fixture
def running(tmp_path):
    path = tmp_path / "mailet-mta.yaml"
    write_config(path, tmp_path / "var")
    server = MailServer(load_config(path))
    pytest_twisted.blockon(server.startService())
    yield server, path
    pytest_twisted.blockon(defer.ensureDeferred(_stop(server)))


async def _stop(server):
    await server.stopService()


def smtp_factory(server):
    return next(svc.factory for name, kind, svc in server.listeners if name == "smtp")


@pytest_twisted.ensureDeferred
async def test_a_file_with_an_unknown_mailet_is_refused_and_nothing_changes(running):
    server, path = running
    pipeline, config = server.pipeline, server.config
    bad = write_config(path, server.data_dir, servernames=["example.net"])
    bad["spoolmanager"]["processors"]["root"][1]["class"] = "NoSuchMailet"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    assert await server.reload() is False
    assert server.pipeline is pipeline and server.spool.pipeline is pipeline
    assert server.config is config
    assert server.directory.servernames == {"example.com"}


@pytest_twisted.ensureDeferred
async def test_a_yaml_syntax_error_is_refused(running):
    server, path = running
    pipeline = server.pipeline
    path.write_text("servernames: [example.com\n")
    assert await server.reload() is False
    assert server.pipeline is pipeline


@pytest_twisted.ensureDeferred
async def test_an_unreadable_certificate_is_refused(running, tmp_path):
    server, path = running
    factory = smtp_factory(server)
    write_config(path, server.data_dir, smtpservers=[{
        "name": "smtp", "listen": "tcp:0:interface=127.0.0.1",
        "tls": {"certificate": str(tmp_path / "missing.pem"),
                "privateKey": str(tmp_path / "missing.key")}}])
    assert await server.reload() is False
    assert factory.tls_context is None


@pytest_twisted.ensureDeferred
async def test_a_valid_file_swaps_pipeline_domains_policy_and_certificate(running, tmp_path):
    server, path = running
    old_pipeline, factory = server.pipeline, smtp_factory(server)
    cert, key = make_cert(tmp_path / "tls")
    write_config(path, server.data_dir, servernames=["example.com", "example.net"],
                 smtpservers=[{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1",
                               "authorizedAddresses": ["10.0.0.0/8"], "maxRcpt": 7,
                               "tls": {"certificate": str(cert),
                                       "privateKey": str(key)}}])
    assert await server.reload() is True
    assert server.pipeline is not old_pipeline
    assert server.spool.pipeline is server.pipeline
    assert server.directory.is_local_domain("example.net")
    assert factory.config.max_recipients == 7
    assert factory.policy.is_authorized_network("10.1.2.3")
    assert not factory.policy.is_authorized_network("127.0.0.1")
    assert factory.tls_context is not None


@pytest_twisted.ensureDeferred
async def test_reload_applies_new_login_throttle_limits(running):
    server, path = running
    throttle = server.authenticator.throttle
    assert throttle.max_failures == 5
    write_config(path, server.data_dir, authThrottle={"maxFailures": 2, "blockTime": "1m",
                                                      "maxConcurrentPerIP": 2})
    assert await server.reload() is True
    assert server.authenticator.throttle is throttle
    assert (throttle.max_failures, throttle.block, throttle.max_concurrent) == (2, 60.0, 2)


@pytest_twisted.ensureDeferred
async def test_a_moved_listener_keeps_its_endpoint_until_restart(running):
    server, path = running
    factory = smtp_factory(server)
    listen = factory.config.listen
    write_config(path, server.data_dir, smtpservers=[
        {"name": "smtp", "listen": "tcp:2999:interface=127.0.0.1"}])
    assert await server.reload() is True
    assert factory.config.listen == listen


@pytest_twisted.ensureDeferred
async def test_the_embedded_default_has_nothing_to_reload(tmp_path):
    from mailet_mta.config import default_config

    config = default_config(str(tmp_path / "var"))
    config.smtpservers, config.pop3servers = [], []
    config.spoolmanager.processors = load_config_text_processors()
    server = MailServer(config)
    assert await server.reload() is False
    server.db.engine.dispose()


def load_config_text_processors():
    from mailet_mta.config import load_config_text

    return load_config_text(yaml.safe_dump({"spoolmanager": {"processors": PROCESSORS}}),
                            "yaml").spoolmanager.processors


@pytest_twisted.ensureDeferred
async def test_reload_takes_the_configured_aliases_and_postmaster(running):
    server, path = running
    processors = copy.deepcopy(PROCESSORS)
    processors["root"].insert(0, {"match": "All", "class": "RecipientRewriteTable",
                                  "parameters": {
                                      "mapping": "sales@example.com=boss@example.org"}})
    write_config(path, server.data_dir, postmaster="admin@example.com",
                 spoolmanager={"processors": processors})
    assert not server.directory.is_local_email("sales@example.com")
    assert await server.reload() is True
    assert server.directory.lookup_mappings("sales@example.com") == ["boss@example.org"]
    assert server.directory.is_local_email("sales@example.com")      # a forward
    assert str(server.directory.postmaster) == "admin@example.com"


@pytest_twisted.ensureDeferred
async def test_a_changed_smarthost_password_applies_to_the_next_delivery(running):
    server, path = running
    assert server.outgoing.credentials.password("relay.example.net", 587, "mailer") is None
    write_config(path, server.data_dir, smarthost={
        "host": "relay.example.net:587", "username": "mailer", "password": "new-secret"})
    assert await server.reload() is True
    assert server.outgoing.credentials.password("relay.example.net", 587,
                                                "mailer") == "new-secret"


@pytest_twisted.ensureDeferred
async def test_reload_applies_the_tls_policy_and_refuses_a_missing_ca_file(running, tmp_path):
    server, path = running
    outgoing = server.outgoing
    assert outgoing.mta_sts is not None and not outgoing.dane
    assert outgoing.tls_reports is not None and outgoing.trust_root is None
    write_config(path, server.data_dir, tlsPolicy={"caFile": str(tmp_path / "missing.pem")})
    assert await server.reload() is False
    assert outgoing.mta_sts is not None                      # nothing changed
    cert, _key = make_cert(tmp_path / "ca")
    write_config(path, server.data_dir, tlsPolicy={
        "mtaSts": False, "dane": True, "tlsReports": False, "caFile": str(cert)})
    assert await server.reload() is True
    assert outgoing.mta_sts is None and outgoing.dane and outgoing.tls_reports is None
    assert outgoing.trust_root is not None


@pytest_twisted.ensureDeferred
async def test_reload_turns_dmarc_reject_and_arc_trusted_sealers_on_and_off(running):
    server, path = running
    backend = smtp_factory(server).backend
    assert backend.dmarc_reject is None
    listener = {"name": "smtp", "listen": "tcp:0:interface=127.0.0.1",
                "authorizedAddresses": ["127.0.0.1/32"], "dmarcReject": True,
                "arcTrustedSealers": ["fwd.example"]}
    write_config(path, server.data_dir, smtpservers=[listener])
    assert await server.reload() is True
    check = backend.dmarc_reject
    assert check is not None
    names = [type(m).__name__ for m in check.mailets]
    assert names == ["DKIMVerify", "SPF", "ARCVerify", "DMARC"]
    # Over the new pipeline's mailet context, not the one the server started with.
    assert all(m.config.context is server.context for m in check.mailets)
    write_config(path, server.data_dir)
    assert await server.reload() is True
    assert backend.dmarc_reject is None


@pytest_twisted.ensureDeferred
async def test_reload_takes_the_srs_mailet_and_a_rotated_secret(running, tmp_path):
    from mailet_mta.api import MailAddress
    from mailets.sender_rewriting import SenderRewriting

    server, path = running
    assert server.directory.srs is None
    secret = tmp_path / "srs.secret"
    secret.write_text("the-first-secret-0123456789\n")
    processors = copy.deepcopy(PROCESSORS)
    processors["root"].insert(0, {"match": "HasMailAttribute=never", "class": "SRS",
                                  "parameters": {"secretFile": str(secret)}})
    write_config(path, server.data_dir, spoolmanager={"processors": processors})
    assert await server.reload() is True
    old = SenderRewriting(["the-first-secret-0123456789"], "example.com")
    bounce_to = old.forward(MailAddress.parse("alice@a.example"))
    assert server.directory.is_local_email(bounce_to)
    secret.write_text("a-rotated-secret-0123456789\n")           # the old one dropped
    assert await server.reload() is True
    assert not server.directory.is_local_email(bounce_to)
    assert server.directory.refusal_of(bounce_to)[:2] == (550, "5.7.1")
