"""The ``mailet-mta`` command: serve, check-config, db, and the administration groups."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .common import CLIError

# Subcommand groups, each a module of this package with register(subparsers).
GROUPS = ("serve", "check_config", "db", "domains", "users", "aliases", "mailbox",
          "repository", "queue", "nodes", "init", "status", "dkim", "webadmin",
          "tls_report")

# What a command may do to the database (see common.open_database). Commands not named
# here may create it ("create"): serve, init, users add, domains add, db upgrade.
READ_ONLY = {"users list", "domains list", "mailbox list", "queue list", "queue show",
             "repository list", "repository show", "status", "nodes", "db current",
             "webadmin token list", "tls-report"}
CHANGES_EXISTING = {"users passwd", "users remove", "users quota", "domains remove",
                    "queue retry", "queue delete", "queue flush", "repository remove",
                    "repository reprocess", "webadmin token revoke"}


def database_mode(args) -> str:
    """"read", "existing" or "create" for the parsed command line ``args``."""
    command = args.command.replace("-", "_")
    sub = getattr(args, f"{command}_command", None)
    nested = getattr(args, f"{sub}_command", None) if sub else None   # webadmin token list
    name = " ".join(filter(None, [args.command, sub, nested]))
    if name in READ_ONLY:
        return "read"
    return "existing" if name in CHANGES_EXISTING else "create"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailet-mta",
        description="A mail server with a James-style matcher/mailet pipeline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.database = database_mode(args)
        code = args.func(args) or 0
        sys.stdout.flush()            # a closed pipe shows up here, not at exit
        return code
    except CLIError as exc:
        print(f"mailet-mta: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``mailet-mta users list | head``): stop quietly, and
        # point stdout at /dev/null so the interpreter's own flush at exit is silent.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
