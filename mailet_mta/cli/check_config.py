"""``mailet-mta check-config FILE``: load and fully validate a configuration."""

from __future__ import annotations

import sys
from typing import NoReturn

from .common import CLIError


def register(sub) -> None:
    p = sub.add_parser("check-config", help="validate a configuration file and exit")
    p.add_argument("file", help="the .yaml or .xml configuration")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import ConfigurationError
    from ..config import load_config
    from ..config.tree import combine
    from ..spool.processor import Pipeline

    errors: list = []
    try:
        config = load_config(args.file)
    except ConfigurationError as exc:
        errors.extend(getattr(exc, "errors", [exc]))
        config = getattr(exc, "config", None)   # what could be read, checked further
    except FileNotFoundError:
        raise CLIError(f"configuration file not found: {args.file}") from None
    if config is not None:
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        try:
            # Build the pipeline with a throw-away context: resolves every mailet and
            # matcher class and runs their init, exactly as start-up would.
            if not errors or {"root", "error"} <= set(config.spoolmanager.processors):
                Pipeline(config.spoolmanager, _CheckContext(config))
            _check_tls(config)
        except ConfigurationError as exc:
            seen = {e.source for e in errors}   # one error per line is enough
            errors.extend(e for e in getattr(exc, "errors", [exc]) if e.source not in seen)
    if errors:
        count = f"{len(errors)} errors:\n" if len(errors) > 1 else ""
        raise CLIError(f"configuration error: {count}{combine(errors)}")
    print(f"{args.file}: OK ({len(config.spoolmanager.processors)} processors, "
          f"{len(config.smtpservers)} SMTP, {len(config.pop3servers)} POP3 and "
          f"{len(config.imapservers)} IMAP listeners)")
    from .startup_warnings import configuration_warnings, directory_of

    for warning in configuration_warnings(config, directory_of(config, args)):
        print(f"mailet-mta: warning: {warning}", file=sys.stderr)
    return 0


def _check_tls(config) -> None:
    """Read every listener's certificate and key, as start-up will."""
    from ..tls import server_context

    for listener in [*config.smtpservers, *config.pop3servers, *config.imapservers]:
        if listener.tls is not None:
            server_context(listener.tls)


class _CheckContext:
    """Enough of a context for mailet/matcher init during validation."""

    def __init__(self, config):
        from twisted.logger import Logger

        from ..address import MailAddress

        self.config = config
        self.server_name = config.server_name
        self.postmaster = MailAddress.parse(config.postmaster_address)
        self.log = Logger(namespace="mailet_mta.check")

    def get_attribute(self, name):
        from ..context import server_attributes

        return server_attributes(self.config).get(name)

    def __getattr__(self, name):
        def unavailable(*_a: object, **_k: object) -> NoReturn:
            raise RuntimeError(f"{name} is not available while checking a configuration")

        return unavailable
