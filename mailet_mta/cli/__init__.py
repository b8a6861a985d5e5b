"""The ``mailet-mta`` command: serve, check-config, db, and the administration groups."""

from __future__ import annotations

import argparse
import importlib
import sys

from .common import CLIError

# Subcommand groups, each a module of this package with register(subparsers).
GROUPS = ("serve", "check_config", "db", "domains", "users", "aliases", "mailbox",
          "repository", "queue", "nodes", "init", "status")


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
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except CLIError as exc:
        print(f"mailet-mta: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
