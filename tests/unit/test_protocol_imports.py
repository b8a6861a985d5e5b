"""The protocol packages reach the rest of the server only through their interfaces:
``smtp/`` through ISMTPBackend, ``pop3/`` through IMailStore (read from the source with
``ast``, so an import inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mailet_mta

PACKAGE = Path(mailet_mta.__file__).parent
FORBIDDEN = ("mailet_mta.storage", "mailet_mta.spool", "mailet_mta.delivery",
             "mailet_mta.acceptance", "mailet_mta.retrieval", "mailet_mta.service",
             "mailet_mta.directory", "mailet_mta.context")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative ones resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_import_reader_resolves_relative_imports(tmp_path):
    source = PACKAGE / "pop3" / "protocol.py"
    assert "mailet_mta.mailstore" in imported_modules(source)
    assert "mailet_mta.flow.lines" in imported_modules(source)


@pytest.mark.parametrize("package", ["pop3", "smtp"])
def test_protocol_packages_import_no_storage_or_engine(package):
    offences = sorted(f"{path.name}: {module}"
                      for path in (PACKAGE / package).glob("*.py")
                      for module in imported_modules(path)
                      if module.startswith(FORBIDDEN))
    assert offences == []


def test_the_mail_store_interface_imports_only_the_api():
    ours = {m for m in imported_modules(PACKAGE / "mailstore.py")
            if m.startswith("mailet_mta")}
    assert all(m.startswith(("mailet_mta.api", "mailet_mta.mail")) for m in ours), ours
