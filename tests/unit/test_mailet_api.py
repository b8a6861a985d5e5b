"""The public mailet API's promises: the configuration-error helper, the lifecycle
methods declared on the interfaces, and the package's version and typing marker."""

from __future__ import annotations

import importlib.metadata
import importlib.resources

import pytest

import mailet_mta
from mailet_mta.api import (
    ConfigurationError,
    GenericMailet,
    GenericMatcher,
    IMailet,
    MailetConfig,
    MatcherConfig,
)


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
