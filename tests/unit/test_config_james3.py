"""James 3's files (mailetcontainer.xml, smtpserver.xml, pop3server.xml,
domainlist.xml), alone and as a conf/ directory, and James's full class names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config import load_config, load_config_text
from mailet_mta.config.james_names import short_name
from mailet_mta.spool.processor import Pipeline
from mailet_mta.spool.registry import resolve
from mailet_mta.testing import FakeMailContext
from mailets.mailets.local_delivery import LocalDelivery
from mailets.matchers.all import All

JAMES3 = Path(__file__).resolve().parents[2] / "conf" / "examples" / "james3"


def test_james3_conf_directory_loads_every_file():
    config = load_config(JAMES3)
    assert config.servernames == ["example.com"]
    assert config.postmaster_address == "postmaster@example.com"
    assert config.spoolmanager.threads == 20
    assert config.spoolmanager.error_repository == "error"
    assert sorted(config.spoolmanager.processors) == sorted([
        "root", "error", "transport", "local-delivery", "relay", "local-address-error",
        "relay-denied", "bounces", "rrt-error"])
    (smtp,) = config.smtpservers
    assert smtp.listen == "tcp:25" and smtp.connection_timeout == 360.0
    assert smtp.reject_unknown_local_users and smtp.tls is None
    (pop3,) = config.pop3servers
    assert pop3.listen == "tcp:110" and pop3.connection_timeout == 1200.0
    assert config.warnings == []


def test_mailetcontainer_keeps_james_names_and_renames_old_parameters():
    config = load_config(JAMES3 / "mailetcontainer.xml")
    relay = config.spoolmanager.processors["relay"].mailets[0]
    assert relay.mailet == "org.apache.james.transport.mailets.RemoteDelivery"
    assert relay.parameters["outgoing"] == "outgoing"         # James 3.0's outgoingQueue
    assert "outgoingQueue" not in relay.parameters
    root = config.spoolmanager.processors["root"].mailets[0]
    assert root.match.name == "org.apache.james.transport.matchers.All"
    assert root.source.endswith("mailetcontainer.xml:27")


def test_mailetcontainer_pipeline_builds_with_james_class_names():
    config = load_config(JAMES3 / "mailetcontainer.xml")
    pipeline = Pipeline(config.spoolmanager, FakeMailContext())
    local = pipeline.processors["local-delivery"].pairs
    assert [type(p.mailet).__name__ for p in local] == ["AddDeliveredToHeader",
                                                       "LocalDelivery"]
    transport = pipeline.processors["transport"].pairs
    assert type(transport[-2].matcher).__name__ == "Or"


@pytest.mark.parametrize("kind,name,cls", [
    ("mailet", "org.apache.james.transport.mailets.LocalDelivery", LocalDelivery),
    ("matcher", "org.apache.james.transport.matchers.All", All),
    ("matcher", "org.apache.mailet.base.matchers.All", All),
])
def test_james_full_names_resolve_to_the_standard_classes(kind, name, cls):
    assert resolve(kind, name) is cls


def test_short_name_keeps_other_names():
    assert short_name("mailet", "acme_mailets.Stamp") == "acme_mailets.Stamp"
    assert short_name("matcher", "org.apache.james.mailetcontainer.impl.matchers.Or") == "Or"


def test_unknown_james_class_is_refused_naming_the_element(tmp_path):
    target = tmp_path / "conf"
    shutil.copytree(JAMES3, target)
    path = target / "mailetcontainer.xml"
    text = path.read_text().replace(
        '<mailet match="All" class="AddDeliveredToHeader"/>',
        '<mailet match="All" class="org.apache.james.transport.mailets.SpamAssassin"/>')
    path.write_text(text)
    line = text.splitlines().index(
        '            <mailet match="All" class="org.apache.james.transport.mailets.'
        'SpamAssassin"/>') + 1
    config = load_config(target)
    with pytest.raises(ConfigurationError) as info:
        Pipeline(config.spoolmanager, FakeMailContext())
    assert str(info.value) == (
        f'{path}:{line}: class="org.apache.james.transport.mailets.SpamAssassin": '
        f"mailet-mta has no mailet SpamAssassin (James's class is not ported); remove "
        f"this <mailet>, or write a mailet of that name and give its dotted path (see "
        f"docs/writing-mailets.md)")


def test_mailetcontainer_refuses_an_unknown_part_at_its_line():
    with pytest.raises(ConfigurationError) as info:
        load_config_text("<mailetcontainer>\n<spool/></mailetcontainer>", "xml", "m.xml")
    assert info.value.source == "m.xml:2"
    assert "<mailetcontainer> holds <context>, <spooler>, <processors>" in info.value.message


def test_a_directory_without_james_files_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="none of James 3's"):
        load_config(tmp_path)


def test_a_directory_with_some_of_the_james_files_loads_those(tmp_path):
    for name in ("smtpserver.xml", "mailetcontainer.xml"):
        shutil.copy(JAMES3 / name, tmp_path / name)
    (tmp_path / "domainlist.xml").write_text(
        "<domainlist><domainnames><domainname>a.example</domainname></domainnames>"
        "</domainlist>")
    assert load_config(tmp_path).servernames == ["a.example"]


def test_a_james_named_to_processor_is_checked_like_the_short_name():
    with pytest.raises(ConfigurationError) as info:
        load_config_text(
            "<mailetcontainer><processors>\n<processor state='root'>\n"
            "<mailet match='All' class='org.apache.james.transport.mailets.ToProcessor'>"
            "<processor>nowhere</processor></mailet></processor>\n<processor state='error'>"
            "<mailet match='All' class='Null'/></processor></processors></mailetcontainer>",
            "xml", "m.xml")
    assert info.value.source == "m.xml:3"
    assert "names processor 'nowhere', which is not defined" in info.value.message
