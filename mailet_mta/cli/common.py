"""What every ``mailet-mta`` subcommand shares: loading the config, opening the database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..api import ConfigurationError


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="configuration file (.yaml or .xml); default: the embedded "
                             "default (SQLite under ./var)")


def load_config(args):
    """The ServerConfig named by ``--config``, or the embedded default."""
    from ..config import default_config, load_config as load

    path = getattr(args, "config", None)
    try:
        return load(path) if path else default_config()
    except ConfigurationError as exc:
        raise CLIError(f"configuration error: {exc}") from None
    except FileNotFoundError:
        raise CLIError(f"configuration file not found: {path}") from None


def database_url(config) -> str:
    from ..storage.db import default_url

    return config.storage.url or default_url(config.storage.data_dir)


def open_database(args, upgrade: bool = True):
    """(config, Database) for a blocking CLI command; the schema is upgraded first."""
    from ..storage.db import Database
    from ..storage.private_files import make_private_dir

    config = load_config(args)
    make_private_dir(config.storage.data_dir)
    db = Database(database_url(config), config.storage.pool_size)
    if upgrade:
        db.upgrade()
    return config, db


def open_blob_store(config):
    from ..storage.blobs import BlobStore

    return BlobStore(blob_dir(config), config.storage.inline_blob_limit)


def blob_dir(config) -> Path:
    """Where large message files live: storage.blob_dir or <data_dir>/blobs."""
    return Path(config.storage.blob_dir or Path(config.storage.data_dir) / "blobs")


def read_password(args, prompt: str = "Password: ") -> str:
    """A password from stdin (``--password-stdin``) or an interactive prompt; never argv."""
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    else:
        import getpass

        try:
            password = getpass.getpass(prompt)
            again = getpass.getpass("Again: ")
        except EOFError:
            raise CLIError("no password given: type it at the prompt, or pipe it in "
                           "with --password-stdin (e.g. echo PASS | mailet-mta users add "
                           "USER --password-stdin)") from None
        if again != password:
            raise CLIError("the passwords do not match")
    if not password:
        raise CLIError("the password is empty")
    return password
