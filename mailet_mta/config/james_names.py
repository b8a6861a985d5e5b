"""James's fully-qualified class names, and the short names mailet-mta knows them by.

A James 3 ``mailetcontainer.xml`` names classes in full
(``org.apache.james.transport.mailets.LocalDelivery``,
``org.apache.james.transport.matchers.All``); James 2 wrote them short. A name in one
of James's packages means the standard mailet or matcher of the same short name here;
when mailet-mta has none, loading the pipeline refuses it, naming the line.
"""

from __future__ import annotations

# Packages James ships its mailets, matchers and composite matchers in.
MAILET_PACKAGES = (
    "org.apache.james.transport.mailets.",
    "org.apache.james.transport.mailets.remote.delivery.",
    "org.apache.james.transport.mailets.delivery.",
    "org.apache.mailet.base.mailets.",
    "org.apache.james.jmap.mailet.",
)
MATCHER_PACKAGES = (
    "org.apache.james.transport.matchers.",
    "org.apache.james.transport.matchers.smtp.",
    "org.apache.mailet.base.matchers.",
    "org.apache.james.mailetcontainer.impl.matchers.",
    "org.apache.james.mailetcontainer.lib.matchers.",
    "org.apache.james.jmap.mailet.",
)
# Any other class of James's own code: recognised as James's, so the error says so.
JAMES_ROOTS = ("org.apache.james.", "org.apache.mailet.")


def is_james_name(name: str) -> bool:
    """True for a Java class name in James's packages."""
    return name.strip().startswith(JAMES_ROOTS)


def short_name(kind: str, name: str) -> str:
    """The name mailet-mta resolves ``name`` by: James's class names lose their package
    (``org.apache.james.transport.matchers.All`` → ``All``); other names are unchanged.

    ``kind`` is "mailet" or "matcher"; a class of James's under another package keeps
    only its last component too, so the error for a missing one names it plainly.
    """
    name = name.strip()
    packages = MAILET_PACKAGES if kind == "mailet" else MATCHER_PACKAGES
    for package in sorted(packages, key=len, reverse=True):
        rest = name[len(package):]
        if name.startswith(package) and rest.isidentifier():
            return rest
    if is_james_name(name):
        return name.rpartition(".")[2]
    return name
