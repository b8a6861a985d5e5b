"""Load a configuration file (YAML or James-style XML) into a checked ServerConfig."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .build import build_config
from .model import ServerConfig
from .tree import Node, attempt, combine, fail, reporting
from .validate import validate_config
from .xml_loader import parse_xml
from .yaml_loader import parse_yaml

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".xml": "xml"}
DEFAULT_NAME = "default.yaml"
# The files of a James 3 conf/ directory that describe what mailet-mta has.
JAMES3_FILES = ("domainlist.xml", "mailetcontainer.xml", "smtpserver.xml",
                "pop3server.xml", "imapserver.xml")


def load_config(path) -> ServerConfig:
    """The configuration in ``path``; the format follows the extension (.yaml/.yml/.xml).

    A directory is read as James 3's ``conf/``: its files named in JAMES3_FILES
    together. Raises ConfigurationError (``file:line: message``) for what is wrong —
    ConfigurationErrors with every error when there are several — and
    FileNotFoundError when there is no such file. Warnings are in ``config.warnings``.
    """
    path = Path(path)
    if path.is_dir():
        config = _load(lambda: _parse_james_dir(path), "xml", str(path))
        config.path = str(path)
        return config
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        fail(f"cannot tell the format of {path.name!r}: name the file .yaml, .yml or "
             f".xml", str(path))
    data = path.read_bytes()
    if fmt == "yaml":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            fail(f"the file is not UTF-8 ({exc}); save it as UTF-8", str(path))
        config = _load(text, fmt, str(path))
    else:
        config = _load(data, fmt, str(path))
    config.path = str(path)
    return config


def load_config_text(text: str, fmt: str, name: str = "<string>") -> ServerConfig:
    """The configuration in ``text`` (``fmt`` is "yaml" or "xml"); ``name`` labels errors."""
    if fmt not in ("yaml", "xml"):
        raise ValueError(f"fmt must be 'yaml' or 'xml', not {fmt!r}")
    return _load(text, fmt, name)


def default_config(data_dir: str | None = None) -> ServerConfig:
    """The embedded default: servername localhost, SQLite under ./var, SMTP on
    127.0.0.1:2525, submission on 127.0.0.1:5870, POP3 on 127.0.0.1:1110, IMAP on
    127.0.0.1:1143 and the
    standard pipeline. ``data_dir`` replaces ``storage.data_dir``."""
    source = resources.files(__package__).joinpath("defaults", DEFAULT_NAME)
    label = str(source) if isinstance(source, Path) else f"<embedded>/{DEFAULT_NAME}"
    config = _load(source.read_text(encoding="utf-8"), "yaml", label, default_pipeline=False)
    if data_dir is not None:
        config.storage.data_dir = str(data_dir)
    return config


def _parse_james_dir(path: Path) -> Node:
    """The files of a James 3 conf/ directory as one tree (each keeps its lines)."""
    merged: dict[str, Node] = {}
    found = [path / name for name in JAMES3_FILES if (path / name).is_file()]
    if not found:
        fail(f"{path} is a directory but holds none of James 3's "
             f"{', '.join(JAMES3_FILES)}; name a configuration file instead", str(path))
    for file in found:
        root = attempt(lambda: parse_xml(file.read_bytes(), str(file)))
        for key, node in (root.value.items() if root is not None else ()):
            if key in merged:
                fail(f"{key} is set here and in {merged[key].source}; keep one",
                     node.source)
            merged[key] = node
    return Node(merged, str(path))


def _load(data, fmt: str, name: str = "<string>", default_pipeline: bool = True
          ) -> ServerConfig:
    """Parse, build and check, collecting every error of the file before raising."""
    with reporting() as report:
        config = attempt(lambda: _build(data, fmt, name, default_pipeline))
    if report.errors:
        raise combine(report.all_errors(name), config)
    config.warnings = report.warnings
    return config


def _build(data, fmt: str, name: str, default_pipeline: bool) -> ServerConfig:
    if callable(data):
        root = data()
    else:
        root = parse_yaml(data, name) if fmt == "yaml" else parse_xml(data, name)
    config = build_config(root)
    if default_pipeline and not config.spoolmanager.processors:
        # No processors written: the embedded default pipeline, as `serve` without
        # --config runs it (a file may set only listeners, storage, domains…).
        config.spoolmanager.processors = default_config().spoolmanager.processors
    return validate_config(config)
