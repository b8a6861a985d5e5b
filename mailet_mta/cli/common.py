"""What every ``mailet-mta`` subcommand shares: loading the config, opening the database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="configuration file (.yaml or .xml); default: the embedded "
                             "default (SQLite under ./var)")


def load_config(args):
    """The ServerConfig named by ``--config``, or the embedded default."""
    from ..api import ConfigurationError
    from ..config import default_config
    from ..config import load_config as load

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
    """(config, Database) for a blocking CLI command; the schema is upgraded first.

    ``args.database`` (set by the command line from its tables) says what the command
    may do to the database: ``"create"`` it when missing, use an ``"existing"`` one, or
    only ``"read"`` one (no schema upgrade either). A command that may not create the
    database and finds none says where it looked and exits 1, leaving no file behind.
    """
    from ..storage.db import Database
    from ..storage.private_files import make_private_dir

    config = load_config(args)
    mode = getattr(args, "database", "create")
    url = database_url(config)
    if mode != "create":
        _require_database_file(config, url)
    else:
        make_private_dir(config.storage.data_dir)
    db = Database(url, config.storage.pool_size)
    if mode != "create":
        _require_schema(config, db)
    if upgrade and mode != "read":
        db.upgrade()
    return config, db


def admin_call(args, fn, *fn_args, with_config: bool = True, prefix: str = ""):
    """Run the administration operation ``fn(conn, [config,] *fn_args)`` in one
    transaction of the configured database; its AdminError becomes a CLIError (with
    ``prefix`` before the message). The loaded configuration is kept in
    ``args.loaded_config`` for the command's own output."""
    from ..admin import AdminError

    config, db = open_database(args)
    args.loaded_config = config
    try:
        with db.transaction() as conn:
            return fn(conn, config, *fn_args) if with_config else fn(conn, *fn_args)
    except AdminError as exc:
        raise CLIError(prefix + exc.message) from None
    finally:
        db.engine.dispose()


def _require_database_file(config, url: str) -> None:
    """For SQLite: the database file must exist (connecting would create it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if not path.exists():
        raise CLIError(f"no database at {path} ({_named_by(config)}); nothing to show or "
                       f"change: give --config FILE of your server, or create it with "
                       f"'mailet-mta db upgrade' or 'mailet-mta serve'")


def _require_schema(config, db) -> None:
    """The database must hold mailet-mta's tables (an empty PostgreSQL database does not)."""
    from ..storage.migrate import current_revision

    if current_revision(db.engine) is None:
        db.engine.dispose()
        raise CLIError(f"the database {db.engine.url.render_as_string(hide_password=True)} "
                       f"({_named_by(config)}) has no mailet-mta tables; create them with "
                       f"'mailet-mta db upgrade' or 'mailet-mta serve'")


def _named_by(config) -> str:
    """Which setting chose the database: the file's storage.url/data_dir or the default."""
    where = config.path or "the embedded default configuration"
    key = "storage.url" if config.storage.url else "storage.data_dir"
    return f"{key} of {where}"


def open_blob_store(config):
    from ..storage.blobs import BlobStore, blob_dir

    return BlobStore(blob_dir(config), config.storage.inline_blob_limit)


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
