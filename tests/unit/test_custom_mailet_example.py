"""The tutorial's example package (conf/examples/acme_mailets) works as documented."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytest_twisted

from mailet_mta.api import ConfigurationError, Mail, MailAddress
from mailet_mta.config.model import MailetSpec, MatcherSpec, ProcessorSpec, SpoolManagerConfig
from mailet_mta.spool import registry
from mailet_mta.spool.processor import Pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "examples" / "acme_mailets"


@pytest.fixture
def example_on_path(tmp_path, monkeypatch):
    """The example importable, with its entry points visible as after `pip install`."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    dist = tmp_path / "acme_mailets-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-mailets\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[mailet_mta.matchers]\nSubjectHasTicket = acme_mailets.tickets:SubjectHasTicket\n\n"
        "[mailet_mta.mailets]\nTagTicket = acme_mailets.tickets:TagTicket\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("acme_mailets.tickets", None)
    sys.modules.pop("acme_mailets", None)


def build(match, mailet, **params):
    procs = {
        "root": ProcessorSpec(name="root", mailets=[
            MailetSpec(mailet=mailet, match=match, parameters=params),
            MailetSpec(mailet="tests.support.plugins.Record", parameters={"label": "after"}),
            MailetSpec(mailet="tests.support.plugins.Drop")]),
        "error": ProcessorSpec(name="error",
                               mailets=[MailetSpec(mailet="tests.support.plugins.Drop")]),
    }
    return Pipeline(SpoolManagerConfig(processors=procs), object())


def test_short_names_resolve_through_entry_points(example_on_path):
    assert registry.resolve("matcher", "SubjectHasTicket").__name__ == "SubjectHasTicket"
    assert registry.resolve("mailet", "TagTicket").__name__ == "TagTicket"


@pytest_twisted.ensureDeferred
async def test_tag_ticket_adds_header_and_attribute_when_subject_matches(example_on_path):
    p = build(MatcherSpec(name="SubjectHasTicket", condition="ACME"), "TagTicket", prefix="ACME")
    mail = Mail(sender=MailAddress.parse("c@example.org"),
                recipients=[MailAddress.parse("support@example.com")],
                message=b"Subject: Re: [ACME-42] printer\r\n\r\nhi\r\n")
    await p.run(mail)
    assert mail.message["X-Ticket"] == "42" and mail.get_attribute("acme.ticket") == 42
    other = Mail(sender=None, recipients=[MailAddress.parse("support@example.com")],
                 message=b"Subject: hello\r\n\r\nhi\r\n")
    await p.run(other)
    assert "X-Ticket" not in other.message


def test_bad_condition_and_missing_parameter_fail_at_start_up(example_on_path):
    with pytest.raises(ConfigurationError, match="ticket prefix"):
        build(MatcherSpec(name="SubjectHasTicket", condition="AC ME"), "TagTicket", prefix="X")
    with pytest.raises(ConfigurationError, match="'prefix' is required"):
        build(None, "TagTicket")
    with pytest.raises(ConfigurationError, match="unknown parameter"):
        build(None, "TagTicket", prefix="A", colour="red")


def test_a_plugin_installed_after_the_first_lookup_is_found_after_refresh(tmp_path, monkeypatch):
    """Entry points are read once per group; a reload (registry.refresh) reads them anew."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match="unknown mailet 'TagTicket'"):
        registry.resolve("mailet", "TagTicket")
    dist = tmp_path / "acme_mailets-1.0.dist-info"       # "pip install" while running
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-mailets\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[mailet_mta.mailets]\nTagTicket = acme_mailets.tickets:TagTicket\n")
    with pytest.raises(ConfigurationError, match="unknown mailet 'TagTicket'"):
        registry.resolve("mailet", "TagTicket")          # the scan of this path is cached
    registry.refresh()
    try:
        assert registry.resolve("mailet", "TagTicket").__name__ == "TagTicket"
    finally:
        registry.refresh()
        sys.modules.pop("acme_mailets.tickets", None)
        sys.modules.pop("acme_mailets", None)
