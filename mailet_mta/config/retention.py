"""The ``repositories:`` section: how long each mail repository keeps its mails.

Refused mail (``relay-denied``, ``address-error``…) is kept as a record for the
administrator; without a bound such a repository grows with every refused message.
Each repository named under ``retention`` keeps its mails at most ``maxAge`` and at
most its newest ``maxMails``; the server enforces that every ``purgeInterval``, off the
reactor thread. A repository not named is never purged automatically: the ``error``
repository holds mail that was neither delivered nor bounced, so it is left to the
administrator (``mailet-mta repository reprocess|purge``). The section is kept in
``ServerConfig.extra["repositories"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import values as v
from .model import doc
from .tree import Node, fail


@dataclass
class RetentionRule:
    """The bound of one repository; 0 means no bound of that kind."""

    max_age: float = doc("seconds a mail is kept after it was stored; 0 = no age limit",
                         default=0.0)
    max_mails: int = doc("the newest mails kept; older ones are purged; 0 = no limit",
                         default=0)
    source: str | None = None


@dataclass
class RepositoriesConfig:
    """Retention of the mail repositories (``repositories:``)."""

    purge_interval: float = doc("how often the retention rules are enforced",
                                default=3600.0)
    retention: dict[str, RetentionRule] = doc(
        "repository name → its maxAge / maxMails (see below); repositories not named "
        "are kept until purged by hand", default_factory=dict)
    source: str | None = None


def build_rule(node: Node, what: str) -> RetentionRule:
    from .build import read_keys

    rule = RetentionRule(source=node.source)
    read_keys(node, what, RETENTION_KEYS, rule)
    return rule


def build_retention(node: Node, what: str) -> dict[str, RetentionRule]:
    from .build import mapping

    rules = {}
    for name, child in mapping(node, what).items():
        if not str(name).strip() or str(name) == "ghost":
            fail(f"{what}: {name!r} is not a repository name", child.source)
        rules[str(name)] = build_rule(child, f"{what}.{name}")
    return rules


def build_repositories(node: Node, what: str) -> RepositoriesConfig:
    from .build import read_keys

    cfg = RepositoriesConfig(source=node.source)
    read_keys(node, what, REPOSITORIES_KEYS, cfg)
    return cfg


RETENTION_KEYS = {
    "maxAge": ("max_age", v.duration(allow_zero=True)),
    "max_age": ("max_age", v.duration(allow_zero=True)),
    "maxMails": ("max_mails", v.integer(0)),
    "max_mails": ("max_mails", v.integer(0)),
}
REPOSITORIES_KEYS = {
    "purgeInterval": ("purge_interval", v.duration()),
    "purge_interval": ("purge_interval", v.duration()),
    "retention": ("retention", build_retention),
}


def repositories_config(config) -> RepositoriesConfig:
    """The section of a loaded ServerConfig (defaults when the file has none)."""
    return config.extra.get("repositories") or RepositoriesConfig()
