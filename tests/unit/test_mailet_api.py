"""The public mailet API's promises: the configuration-error helper, the lifecycle
methods declared on the interfaces, one record of the AUTH identity, one definition of
each shared error, and the package's version and typing marker."""

from __future__ import annotations

import importlib.metadata
import importlib.resources

import pytest

import mailet_mta
from mailet_mta.api import (
    ATTR_AUTH_USER,
    ConfigurationError,
    GenericMailet,
    GenericMatcher,
    IMailet,
    MailetConfig,
    MappingError,
    MatcherConfig,
)
from mailet_mta.testing import fake_mail


class _Strict(GenericMailet):
    def init_mailet(self) -> None:
        if self.get_init_parameter("bad"):
            self.fail("bad must not be set")


def test_fail_names_the_mailet_and_the_entry():
    mailet = _Strict()
    with pytest.raises(ConfigurationError) as err:
        mailet.init(MailetConfig("Strict", None, {"bad": "1"}, source="mailets.yaml:7"))
    assert str(err.value) == "mailets.yaml:7: Strict: bad must not be set"


def test_underscore_fail_is_a_deprecated_alias_of_fail():
    matcher = GenericMatcher()
    matcher.config = MatcherConfig("M", None, None)
    with pytest.warns(DeprecationWarning, match="fail"), pytest.raises(ConfigurationError):
        matcher._fail("old spelling")


def test_required_processors_is_declared_and_empty_by_default():
    assert "required_processors" in IMailet.names()
    assert GenericMailet().required_processors() == []


def test_version_comes_from_the_package():
    assert importlib.metadata.version("mailet-mta") == mailet_mta.__version__


@pytest.mark.parametrize("package", ["mailet_mta", "mailets"])
def test_packages_are_marked_typed(package):
    assert importlib.resources.files(package).joinpath("py.typed").is_file()


def test_the_auth_user_is_recorded_once_in_its_attribute():
    mail = fake_mail(attributes={ATTR_AUTH_USER: "alice"})
    assert mail.auth_user == "alice"
    mail.auth_user = "bob"
    assert mail.get_attribute(ATTR_AUTH_USER) == "bob"
    mail.auth_user = None
    assert ATTR_AUTH_USER not in mail.attributes and mail.auth_user is None


def test_lease_and_mapping_errors_are_defined_once():
    from mailet_mta import mailstore, retrieval
    from mailet_mta.spool import store
    from mailet_mta.storage import leases, mappings
    from mailets import rewrite_mappings

    assert store.LeaseLost is mailstore.LeaseLost is retrieval.LeaseLost is leases.LeaseLost
    assert mappings.MappingError is rewrite_mappings.MappingError is MappingError
